"""SAELens and sparsify SAE folders ↔ :class:`SparseAutoEncoder` (and :class:`Transcoder`).

Neither peer package is needed: both layouts are a JSON config plus one safetensors file, read and
written here directly (checked against the installed peers in ``tests/test_sae_interop.py``).

* **SAELens** (``SAE.save_model`` / ``SAE.load_from_disk``): ``cfg.json`` + ``sae_weights.safetensors``
  with ``W_enc`` (d_in, d_sae), ``W_dec`` (d_sae, d_in), ``b_enc``, ``b_dec`` and, for JumpReLU,
  ``threshold`` (d_sae,). Architectures mapped: ``standard`` ↔ ``sae_relu``, ``topk`` ↔ ``sae_topk``,
  ``jumprelu`` ↔ ``sae_jumprelu``; our ``sae_batchtopk``/``sae_matryoshka`` are written as ``jumprelu`` with
  their global inference threshold, as SAELens itself saves BatchTopK. ``transcoder``/``skip_transcoder``
  ↔ :class:`Transcoder`. ``apply_b_dec_to_input=False`` is folded into ``b_enc``, and
  ``rescale_acts_by_decoder_norm=True`` (SAELens' TopK training default) into unit-norm decoder rows (both exact).
* **sparsify** (``SparseCoder.save_to_disk`` / ``load_from_disk``): ``cfg.json`` (``SparseCoderConfig``
  + ``d_in``) + ``sae.safetensors`` with ``encoder.weight`` (m, d_in), ``encoder.bias``, ``W_dec`` (m, d_out),
  ``b_dec`` and, with ``skip_connection``, ``W_skip`` (d_out, d_in). TopK only (sparsify's core).

Pretrained SAEs from the hub are one download away, which this library never does itself::

    from huggingface_hub import snapshot_download                        # sparsify releases
    path = snapshot_download("EleutherAI/sae-pythia-70m-32k", allow_patterns="layers.3/*")
    sae = SparseAutoEncoder.from_sparsify(f"{path}/layers.3")
    from sae_lens import SAE                                              # SAELens releases
    SAE.from_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre").save_model("gpt2-l8")
    sae = SparseAutoEncoder.from_saelens("gpt2-l8")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from isthmus.bottlenecks.sparse import TopKConfig
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.io import atomic_write_json, load_tensors, read_json, save_tensors

if TYPE_CHECKING:
    from isthmus.interp.transcoder import Transcoder

__all__ = ["from_saelens", "to_saelens", "from_sparsify", "to_sparsify", "InteropError"]

SAELENS_CFG, SAELENS_WEIGHTS = "cfg.json", "sae_weights.safetensors"
SPARSIFY_CFG, SPARSIFY_WEIGHTS = "cfg.json", "sae.safetensors"


class InteropError(ValueError):
    """A folder that cannot be represented exactly (say which setting, and what to do)."""


def _unit_rows(w: torch.Tensor) -> bool:
    return bool(torch.allclose(w.norm(dim=1), torch.ones(w.shape[0], dtype=w.dtype), atol=1e-4))


def _build(
    d_in: int, d_sae: int, bottleneck: str, bn_cfg: dict, unit: bool, d_out: int | None = None, skip: bool = False
) -> SparseAutoEncoder:
    base: dict[str, Any] = dict(
        d_in=d_in, d_sae=d_sae, bottleneck=bottleneck, bottleneck_config=bn_cfg, normalize_decoder=unit
    )
    if d_out is None and not skip:
        return SparseAutoEncoder(SAEConfig(**base))
    from isthmus.interp.transcoder import Transcoder, TranscoderConfig

    return Transcoder(TranscoderConfig(**base, d_out=d_out or d_in, skip=skip))


def _load_state(sae: SparseAutoEncoder, state: dict[str, torch.Tensor], source: Path) -> SparseAutoEncoder:
    own = sae.state_dict()
    missing = [k for k, _ in sae.named_parameters() if k not in state]
    if missing:
        raise InteropError(f"{source}: could not map {missing} from the folder's tensors")
    state = {**own, **state}  # buffers (firing counters, step) start fresh
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise InteropError(f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    sae.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return sae.eval()


# ---- SAELens --------------------------------------------------------------------------------------------
def from_saelens(path: str | Path) -> SparseAutoEncoder:
    """Load a SAELens SAE folder (``cfg.json`` + ``sae_weights.safetensors``) as an isthmus SAE, float32."""
    path = Path(path)
    cfg: dict[str, Any] = read_json(path / SAELENS_CFG)
    w = {k: v.float() for k, v in load_tensors(path / SAELENS_WEIGHTS).items()}
    arch = cfg.get("architecture", "standard")
    if cfg.get("normalize_activations", "none") not in ("none", None):
        raise InteropError(
            f"{path}: normalize_activations={cfg['normalize_activations']!r} rescales inputs at "
            "run time; fold it first (SAELens: sae.fold_activation_norm_scaling_factor(...)) and save again"
        )
    kinds = {
        "standard": ("sae_relu", {}),
        "topk": ("sae_topk", {"k": int(cfg.get("k", 0))}),
        "jumprelu": ("sae_jumprelu", {}),
        "transcoder": ("sae_relu", {}),
        "skip_transcoder": ("sae_relu", {}),
        "jumprelu_transcoder": ("sae_jumprelu", {}),
    }
    if arch not in kinds:
        raise InteropError(
            f"{path}: SAELens architecture {arch!r} has no isthmus equivalent; supported: {sorted(kinds)}"
        )
    bottleneck, bn_cfg = kinds[arch]
    w_enc, w_dec = w["W_enc"].t().contiguous(), w["W_dec"]  # ours: (m, d_in), (m, d_out)
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    transcoder = "transcoder" in arch
    b_enc = w["b_enc"]
    if cfg.get("rescale_acts_by_decoder_norm"):  # SAELens' TopK training default; fold it exactly, as its
        n = w_dec.norm(dim=1).clamp_min(1e-12)  # fold_W_dec_norm does: the codes are unchanged
        w_enc, b_enc, w_dec = w_enc * n.unsqueeze(1), b_enc * n, w_dec / n.unsqueeze(1)
    if not transcoder and not cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc + w_enc @ w["b_dec"]  # we always subtract b_dec first: W(x − b) + (c + W b) = W x + c
    sae = _build(
        d_in,
        d_sae,
        bottleneck,
        bn_cfg,
        _unit_rows(w_dec),
        d_out=int(cfg.get("d_out", d_in)) if transcoder else None,
        skip=arch == "skip_transcoder",
    )
    state = {"W_enc": w_enc, "W_dec": w_dec, "b_enc": b_enc, "b_dec": w["b_dec"]}
    if "threshold" in w:
        state["bottleneck.log_threshold"] = w["threshold"].clamp_min(1e-30).log()
    if "W_skip" in w:
        state["W_skip"] = w["W_skip"]
    return _load_state(sae, state, path)


def _inference_threshold(sae: SparseAutoEncoder) -> torch.Tensor | None:
    bn = sae.bottleneck
    if sae.config.bottleneck == "sae_jumprelu":
        return cast(torch.Tensor, bn.threshold).detach()
    if sae.config.bottleneck in ("sae_batchtopk", "sae_matryoshka"):
        t = float(cast(torch.Tensor, bn.threshold))
        if t < 0:
            raise InteropError(
                "this BatchTopK SAE has no inference threshold yet (train it first); SAELens stores "
                "BatchTopK as JumpReLU with that threshold"
            )
        return torch.full((sae.config.d_sae,), t)
    return None


def to_saelens(sae: SparseAutoEncoder, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` as a SAELens folder that ``sae_lens.SAE.load_from_disk(path)`` loads."""
    path = Path(path)
    name = sae.config.bottleneck
    transcoder = getattr(sae, "is_transcoder", False)
    tc = cast("Transcoder", sae)  # read only where transcoder is set
    if name == "sae_topk" and not transcoder:
        k = int(cast(TopKConfig, sae.bottleneck.config).k)
        arch, extra = "topk", {"k": k, "rescale_acts_by_decoder_norm": False}
    elif name == "sae_relu":
        arch, extra = "standard", {}
    elif name in ("sae_jumprelu", "sae_batchtopk", "sae_matryoshka"):
        arch, extra = "jumprelu", {}
    else:
        raise InteropError(f"{name} has no SAELens inference architecture (topk, standard, jumprelu)")
    if transcoder:
        if arch == "topk":
            raise InteropError("SAELens has no TopK transcoder class; use to_sparsify for TopK transcoders")
        arch = {"standard": "skip_transcoder" if tc.config.skip else "transcoder", "jumprelu": "jumprelu_transcoder"}[
            arch
        ]
        if tc.config.skip and arch == "jumprelu_transcoder":
            raise InteropError("SAELens has no JumpReLU skip transcoder")
        extra["d_out"] = tc.config.d_out
    tensors = {
        "W_enc": sae.W_enc.detach().t().contiguous().float().cpu(),
        "W_dec": sae.W_dec.detach().float().cpu(),
        "b_enc": sae.b_enc.detach().float().cpu(),
        "b_dec": sae.b_dec.detach().float().cpu(),
    }
    threshold = _inference_threshold(sae)
    if threshold is not None:
        tensors["threshold"] = threshold.float().cpu()
    if transcoder and tc.W_skip is not None:  # set iff config.skip
        tensors["W_skip"] = tc.W_skip.detach().float().cpu()
    cfg = {
        "d_in": sae.config.d_in,
        "d_sae": sae.config.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": not transcoder,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"isthmus_bottleneck": name, **(metadata or {})},
        "architecture": arch,
        **extra,
    }
    path.mkdir(parents=True, exist_ok=True)
    save_tensors(path / SAELENS_WEIGHTS, tensors)
    atomic_write_json(path / SAELENS_CFG, cfg)
    return path


# ---- sparsify -------------------------------------------------------------------------------------------
def from_sparsify(path: str | Path) -> SparseAutoEncoder:
    """Load a sparsify ``SparseCoder`` folder (``cfg.json`` + ``sae.safetensors``), float32."""
    path = Path(path)
    cfg: dict[str, Any] = read_json(path / SPARSIFY_CFG)
    w = {k: v.float() for k, v in load_tensors(path / SPARSIFY_WEIGHTS).items()}
    if cfg.get("activation", "topk") != "topk":
        raise InteropError(f"{path}: sparsify activation {cfg['activation']!r} is not supported (only topk)")
    for flag in ("embed_skip", "gram_lookup"):
        if cfg.get(flag):
            raise InteropError(f"{path}: sparsify {flag}=True needs inputs besides the hook activation; not supported")
    d_in = int(cfg["d_in"])
    m = int(cfg.get("num_latents") or d_in * int(cfg.get("expansion_factor", 32)))
    transcode, skip = bool(cfg.get("transcode")), bool(cfg.get("skip_connection"))
    w_dec = w["W_dec"]
    sae = _build(
        d_in,
        m,
        "sae_topk",
        {"k": int(cfg["k"])},
        bool(cfg.get("normalize_decoder", True)) and _unit_rows(w_dec),
        d_out=w_dec.shape[1] if (transcode or skip) else None,
        skip=skip,
    )
    state = {"W_enc": w["encoder.weight"], "W_dec": w_dec, "b_enc": w["encoder.bias"], "b_dec": w["b_dec"]}
    if skip:
        state["W_skip"] = w["W_skip"]
        if not transcode:  # sparsify subtracts b_dec before encoding when autoencoding; our Transcoder does
            # not, so fold it into the bias: W(x − b) + c = W x + (c − W b)
            state["b_enc"] = w["encoder.bias"] - w["encoder.weight"] @ w["b_dec"]
    return _load_state(sae, state, path)


def to_sparsify(sae: SparseAutoEncoder, path: str | Path) -> Path:
    """Write a TopK ``sae`` (or TopK transcoder) as a sparsify folder ``SparseCoder.load_from_disk`` loads."""
    path = Path(path)
    if sae.config.bottleneck != "sae_topk":
        raise InteropError(f"sparsify stores TopK sparse coders only, not {sae.config.bottleneck}")
    transcoder = getattr(sae, "is_transcoder", False)
    d_in, m = sae.config.d_in, sae.config.d_sae
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, m // d_in),
        "normalize_decoder": sae.config.normalize_decoder,
        "num_latents": m,
        "k": int(cast(TopKConfig, sae.bottleneck.config).k),
        "multi_topk": False,
        "skip_connection": bool(transcoder and cast("Transcoder", sae).config.skip),
        "transcode": transcoder,
        "d_in": d_in,
    }
    tensors = {
        "encoder.weight": sae.W_enc.detach().float().cpu(),
        "encoder.bias": sae.b_enc.detach().float().cpu(),
        "W_dec": sae.W_dec.detach().float().cpu(),
        "b_dec": sae.b_dec.detach().float().cpu(),
    }
    if cfg["skip_connection"]:
        tensors["W_skip"] = cast(torch.Tensor, sae.W_skip).detach().float().cpu()
    path.mkdir(parents=True, exist_ok=True)
    save_tensors(path / SPARSIFY_WEIGHTS, tensors)
    atomic_write_json(path / SPARSIFY_CFG, cfg)
    return path
