"""Interpretability: hooks on any ``nn.Module`` and Hugging Face models, an on-disk activation store,
and a zoo of tiny transformers trained on synthetic tasks with known structure.

``transformers`` is optional (extra ``interp``) and imported only when a Hugging Face model is loaded.
"""

from isthmus.interp.hf import Harvest, harvest, hook_points, load_hf, load_minilm, tokenize_batches
from isthmus.interp.hooks import (HookError, Point, StopForward, available_points, capture, patch,
                                  resolve_point, run_with_cache)
from isthmus.interp.splice import SpliceResult, splice_loss_recovered
from isthmus.interp.store import ActivationStore, StoreWriter, harvest_to_store, iter_activations

__all__ = [
    "Point", "HookError", "StopForward", "capture", "patch", "run_with_cache", "resolve_point",
    "available_points", "load_minilm", "load_hf", "hook_points", "tokenize_batches", "harvest", "Harvest",
    "ActivationStore", "StoreWriter", "harvest_to_store", "iter_activations", "splice_loss_recovered", "SpliceResult",
]
