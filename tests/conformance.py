"""The shared conformance battery every model and bottleneck runs.

Each check takes a *factory* (a zero-argument callable building a fresh module) so the
battery can build twice for determinism and rebuild after saving. A new bottleneck joins by
adding a case to ``BOTTLENECK_CASES`` in test_conformance.py; a test fails if a registered
bottleneck has no case.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from isthmus.models import AutoEncoder, ModelOutput

Factory = Callable[[], nn.Module]


def _fresh(factory: Factory, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return factory()


def _loss(model: nn.Module, batch: Any, seed: int = 123) -> ModelOutput:
    torch.manual_seed(seed)  # same noise (VAE sampling, dropout, corruption) on every call
    return model.compute_loss(batch)


def check_output_shapes(model: nn.Module, batch: Any) -> ModelOutput:
    out = _loss(model, batch)
    assert isinstance(out, ModelOutput), f"compute_loss must return ModelOutput, got {type(out)}"
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.losses, "at least one named loss term"
    for name, term in out.losses.items():
        assert term.dim() == 0, f"loss term {name} must be a scalar"
    total = sum(out.losses.values())
    torch.testing.assert_close(out.loss, total, msg="loss must equal the sum of the named terms")
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if isinstance(model, AutoEncoder):
        assert out.recon.shape == x.shape
        assert out.latent.shape == (x.shape[0], model.latent_dim)
    return out


def check_save_load(factory: Factory, batch: Any, tmp_path) -> None:
    model = _fresh(factory).eval()
    if isinstance(model, AutoEncoder):
        model.save_pretrained(tmp_path / "m")
        files = sorted(p.name for p in (tmp_path / "m").iterdir())
        assert files == ["config.json", "model.safetensors"], files
        loaded = type(model).from_pretrained(tmp_path / "m").eval()  # subclasses load as themselves
        assert type(loaded) is type(model)
    else:
        from safetensors.torch import load_file, save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
        loaded = _fresh(factory, seed=99).eval()
        loaded.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    with torch.no_grad():
        a, b = _loss(model, batch), _loss(loaded, batch)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)


def check_determinism(factory: Factory, batch: Any) -> None:
    m1, m2 = _fresh(factory), _fresh(factory)
    for (n1, p1), (_, p2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(p1, p2), f"parameter {n1} differs between two builds with the same seed"
    torch.testing.assert_close(_loss(m1, batch).loss, _loss(m2, batch).loss, rtol=0, atol=0)


def check_step_lowers_loss(factory: Factory, batch: Any, lr: float = 1e-3) -> None:
    model = _fresh(factory).train()
    before = _loss(model, batch)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    before.loss.backward()
    opt.step()
    after = _loss(model, batch)
    assert after.loss.item() < before.loss.item(), f"one step did not lower the loss: {before.loss.item()} -> {after.loss.item()}"


def check_every_term_has_gradient(factory: Factory, batch: Any) -> None:
    model = _fresh(factory).train()
    if hasattr(model, "set_step"):
        model.set_step(10_000)  # past any warm-up, so weights such as β·KL are non-zero
    out = _loss(model, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    for name, term in out.losses.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        total = sum(g.abs().sum().item() for g in grads if g is not None)
        assert total > 0, f"loss term {name!r} has no gradient reaching any parameter"


def run_battery(factory: Factory, batch: Any, tmp_path) -> None:
    check_output_shapes(_fresh(factory), batch)
    check_save_load(factory, batch, tmp_path)
    check_determinism(factory, batch)
    check_step_lowers_loss(factory, batch)
    check_every_term_has_gradient(factory, batch)
