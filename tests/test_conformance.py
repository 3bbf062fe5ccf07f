"""Every model and bottleneck runs the shared battery in conformance.py.

Cases for the core parts are below. Each bottleneck family adds its own cases in a module
``tests/cases_<family>.py`` defining ``BOTTLENECK_CASES`` and/or ``MODEL_CASES`` dicts of
``name -> (factory, batch)``; they are merged here, so families never edit one shared file.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from conformance import run_battery
from isthmus.bottlenecks import BOTTLENECKS
from isthmus.models import AutoEncoder, Classifier
from isthmus.nn import MLP, MLPConfig


def _batch(shape=(16, 12)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(*shape, generator=g)


def _ae_with(bottleneck: str, **kw):
    return lambda: AutoEncoder.mlp(12, latent_dim=4, hidden=(16,), bottleneck=bottleneck, **kw)


# One entry per registered bottleneck (the test below fails when one is missing).
BOTTLENECK_CASES: dict[str, tuple] = {
    "identity": (_ae_with("identity"), _batch()),
    "gaussian": (_ae_with("gaussian", beta=2.0, free_bits=0.01, kl_warmup_steps=5), _batch()),
}

MODEL_CASES: dict[str, tuple] = {
    "mlp-ae": (lambda: AutoEncoder.mlp(12, latent_dim=3), _batch()),
    "deep-mlp-ae": (lambda: AutoEncoder.mlp(12, latent_dim=3, hidden=(32, 16, 8, 8), norm="layer", dropout=0.1), _batch()),
    "denoising-ae": (
        lambda: AutoEncoder.mlp(12, latent_dim=3, objective={"corruption": "mask", "corruption_level": 0.3}),
        _batch(),
    ),
    "bce-vae": (
        lambda: AutoEncoder.mlp(12, latent_dim=3, bottleneck="gaussian", out_activation="sigmoid",
                                objective={"recon_loss": "bce"}),
        _batch(),
    ),
    "conv-ae": (lambda: AutoEncoder.conv(image_size=8, in_channels=1, latent_dim=4, channels=(4, 8)), _batch((4, 1, 8, 8))),
    "conv-vae": (
        lambda: AutoEncoder.conv(image_size=8, in_channels=2, latent_dim=4, channels=(4,), bottleneck="gaussian"),
        _batch((4, 2, 8, 8)),
    ),
    "classifier": (
        lambda: Classifier(MLP(MLPConfig(in_dim=12, out_dim=3, hidden=[8]))),
        (_batch(), torch.tensor([0, 1, 2, 0] * 4)),
    ),
}


for _path in sorted(Path(__file__).parent.glob("cases_*.py")):
    _mod = importlib.import_module(_path.stem)
    for _target, _extra in ((BOTTLENECK_CASES, "BOTTLENECK_CASES"), (MODEL_CASES, "MODEL_CASES")):
        for _name, _case in getattr(_mod, _extra, {}).items():
            assert _name not in _target, f"{_path.name}: duplicate conformance case {_name!r}"
            _target[_name] = _case


def test_every_registered_bottleneck_has_a_case():
    missing = set(BOTTLENECKS.names()) - set(BOTTLENECK_CASES)
    assert not missing, f"add conformance cases for {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(BOTTLENECK_CASES))
def test_bottleneck_conformance(name, tmp_path):
    factory, batch = BOTTLENECK_CASES[name]
    run_battery(factory, batch, tmp_path)


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_model_conformance(name, tmp_path):
    factory, batch = MODEL_CASES[name]
    run_battery(factory, batch, tmp_path)


@pytest.mark.parametrize("name", sorted(BOTTLENECKS.names()))
def test_bottleneck_usable_on_its_own(name):
    """Each bottleneck works without an AutoEncoder around it."""
    bn = BOTTLENECKS.build(name, latent_dim=5)
    assert isinstance(bn, nn.Module)
    out = bn(torch.randn(7, bn.in_features))
    assert out.latent.shape == (7, 5)
    for term in out.losses.values():
        assert term.dim() == 0
