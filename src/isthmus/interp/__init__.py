"""Interpretability: hooks on any ``nn.Module`` and Hugging Face models, an on-disk activation store,
sparse autoencoders trained on host activations, and a zoo of tiny transformers with known structure.

Submodules (import them directly): ``toy`` (tiny transformer zoo and tasks), ``superposition``
(ground-truth feature benchmark), ``circuits`` (``find_circuit`` and patching baselines),
``codebook`` (codebook features), ``explain`` (auto-interpretation), ``selection`` (data selection by
features), ``dashboard`` (static HTML feature browser), ``attribution`` (per-head attribution).

``transformers`` is optional (extra ``interp``) and imported only when a Hugging Face model is loaded.
"""

from isthmus.interp.hf import Harvest, harvest, hook_points, load_hf, load_minilm, tokenize_batches
from isthmus.interp.hooks import (
    HookError,
    Point,
    StopForward,
    available_points,
    capture,
    patch,
    resolve_point,
    run_with_cache,
)
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.sae_train import SAETrainConfig, train_sae
from isthmus.interp.splice import SpliceResult, splice_loss_recovered
from isthmus.interp.store import ActivationStore, StoreWriter, harvest_to_store, iter_activations

__all__ = [
    "Point",
    "HookError",
    "StopForward",
    "capture",
    "patch",
    "run_with_cache",
    "resolve_point",
    "available_points",
    "load_minilm",
    "load_hf",
    "hook_points",
    "tokenize_batches",
    "harvest",
    "Harvest",
    "ActivationStore",
    "StoreWriter",
    "harvest_to_store",
    "iter_activations",
    "splice_loss_recovered",
    "SpliceResult",
    "SparseAutoEncoder",
    "SAEConfig",
    "SAETrainConfig",
    "train_sae",
]
