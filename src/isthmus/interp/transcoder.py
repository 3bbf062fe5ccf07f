"""Transcoders: a sparse dictionary that reads one hook point and predicts another.

ŷ = b_dec + Σ_i z_i d_i (+ W_skip x) with z = σ(W_enc x + b_enc): the input x is, say, an MLP's input
and the target y its output, so the transcoder is a sparse, interpretable replacement for the MLP
(Dunefsky et al. 2024, arXiv 2406.11944); ``skip=True`` adds the linear skip connection of skip
transcoders (Paulo et al. 2025, arXiv 2501.18823). Same bottlenecks, sparse TopK kernels, AuxK,
training loop (:func:`~isthmus.interp.sae_train.train_sae` with ``(x, y)`` data) and save/load as
:class:`SparseAutoEncoder`; there is no tied pre-bias because input and output spaces differ.

:func:`transcoder_loss_recovered` evaluates it where it matters: the host's loss when the
transcoder's prediction replaces the target module's output, against zero- and mean-ablating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from isthmus.config import ConfigError
from isthmus.interp.hooks import capture, patch, resolve_point, run_with_cache
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.splice import _loss, _to_device, _unpack
from isthmus.metrics.sae import loss_recovered
from isthmus.models.output import ModelOutput

__all__ = ["TranscoderConfig", "Transcoder", "transcoder_loss_recovered", "load_dictionary"]


@dataclass
class TranscoderConfig(SAEConfig):
    """:class:`SAEConfig` plus the output width ``d_out`` (0 = ``d_in``) and the linear ``skip`` term."""

    d_out: int = 0
    skip: bool = False

    def validate(self) -> None:
        super().validate()
        if self.d_out < 0:
            raise ConfigError(f"{type(self).__name__}.d_out must be >= 0 (0 = d_in), got {self.d_out}")


class Transcoder(SparseAutoEncoder):
    """Sparse map from ``d_in`` input activations to ``d_out`` target activations.

    >>> tc = Transcoder(TranscoderConfig(d_in=8, d_out=6, d_sae=32, bottleneck_config={"k": 4}, skip=True))
    >>> tc(torch.randn(3, 8), target=torch.randn(3, 6)).recon.shape
    torch.Size([3, 6])
    """

    is_transcoder = True
    config_class = TranscoderConfig  # save_pretrained/from_pretrained: see isthmus.io.Pretrained
    config: TranscoderConfig

    def __init__(self, config: TranscoderConfig | None = None, **overrides: Any) -> None:
        config = config or TranscoderConfig()
        config = config.with_overrides(overrides) if overrides else config
        if not config.d_out:
            config = config.with_overrides({"d_out": config.d_in})
        super().__init__(config)
        m, d_in, d_out = config.d_sae, config.d_in, config.d_out
        w = torch.randn(m, d_out)
        self.W_dec = nn.Parameter(w / w.norm(dim=1, keepdim=True))  # (m, d_out) unit rows
        enc = torch.randn(m, d_in)
        self.W_enc = nn.Parameter(enc / enc.norm(dim=1, keepdim=True))  # no tied init: different spaces
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_out, d_in)) if config.skip else None
        if config.normalize_decoder:
            self.W_dec.register_hook(self._project_grad)

    def _center(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _skip(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.W_skip is None else x @ self.W_skip.t()

    @torch.no_grad()
    def init_b_dec_(self, y: torch.Tensor) -> None:
        """Output bias at the target mean (``train_sae`` passes the target)."""
        self.b_dec.copy_(y.mean(0))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """ŷ for inputs x (eval-mode code)."""
        return self(x).recon

    def forward(self, x: torch.Tensor, dense_latent: bool = True, target: torch.Tensor | None = None) -> ModelOutput:
        if target is not None and (target.dim() != 2 or target.shape[1] != self.config.d_out):
            raise ValueError(f"Transcoder targets must be (B, {self.config.d_out}), got {tuple(target.shape)}")
        if target is None:  # inference: the target only enters the loss, so use a dummy of the right width
            target = x.new_zeros(x.shape[0], self.config.d_out)
        return super().forward(x, dense_latent=dense_latent, target=target)

    def compute_loss(self, batch: Any) -> ModelOutput:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise ValueError("a Transcoder trains on (input, target) pairs; got a single tensor")
        return self(batch[0], dense_latent=False, target=batch[1])


@torch.no_grad()
def transcoder_loss_recovered(
    model: nn.Module, batches: Iterable[Any], input_point: str, output_point: str, transcoder: Transcoder
) -> dict[str, Any]:
    """Host loss clean / with the transcoder's prediction replacing ``output_point`` / zero- and
    mean-ablated there. The prediction is computed from the (clean) ``input_point`` activation of the
    same forward pass, so ``input_point`` must run before ``output_point`` (MLP in → MLP out)."""
    was = model.training
    model.eval()
    transcoder.eval()
    p_in, p_out = resolve_point(model, input_point), resolve_point(model, output_point)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    items = [_to_device(_unpack(b), device) for b in batches]
    if not items:
        raise ValueError("transcoder_loss_recovered got no batches")
    w = transcoder.W_enc
    total: torch.Tensor | None
    sums, total, count, n = {"clean": 0.0, "spliced": 0.0, "zero": 0.0, "mean": 0.0}, None, 0, 0
    kls = {"spliced": 0.0, "zero": 0.0, "mean": 0.0}
    try:
        for inputs, _, _ in items:  # mean output activation, for the mean-ablation reference
            v = run_with_cache(model, inputs, [p_out])[p_out.name]
            flat = v.reshape(-1, v.shape[-1]).double()
            total = flat.sum(0) if total is None else total + flat.sum(0)
            count += flat.shape[0]
        assert total is not None  # items is not empty
        mean = (total / count).float()
        for inputs, target_mask, _ in items:
            clean, cnt, emb, _ = _loss(model, inputs, target_mask, None)
            sums["clean"] += clean
            n += cnt
            with capture(model, [p_in]) as cache:  # keeps the input activation as it flows past

                def predicted(v: torch.Tensor) -> torch.Tensor:
                    x = cache[p_in.name]
                    flat = x.reshape(-1, x.shape[-1]).to(device=w.device, dtype=w.dtype)
                    return transcoder.predict(flat).to(v.dtype).reshape(v.shape)

                with patch(model, p_out, predicted):
                    loss, _, _, kl = _loss(model, inputs, target_mask, emb)
            sums["spliced"] += loss
            kls["spliced"] += kl
            for name, fn in (("zero", torch.zeros_like), ("mean", lambda v: mean.to(v.dtype).expand_as(v))):
                with patch(model, p_out, fn):
                    loss, _, _, kl = _loss(model, inputs, target_mask, emb)
                sums[name] += loss
                kls[name] += kl
    finally:
        model.train(was)
    c, s, z, m = (sums[k] / max(n, 1) for k in ("clean", "spliced", "zero", "mean"))
    return {
        "input_point": p_in.name,
        "output_point": p_out.name,
        "clean_loss": c,
        "spliced_loss": s,
        "zero_ablated_loss": z,
        "mean_ablated_loss": m,
        "loss_recovered": loss_recovered(c, s, z),
        "loss_recovered_mean": loss_recovered(c, s, m),
        "n": n,
        **{f"kl_{k}": v / max(n, 1) for k, v in kls.items()},
    }


def load_dictionary(path: str | Path, map_location: str | torch.device = "cpu") -> SparseAutoEncoder:
    """A folder written by ``save_pretrained``: a :class:`Transcoder` or a :class:`SparseAutoEncoder`."""
    from isthmus.io import read_json

    model = read_json(Path(path) / "config.json").get("model")
    cls = Transcoder if model == "Transcoder" else SparseAutoEncoder
    return cls.from_pretrained(path, map_location)
