"""Small shared helpers for blocks: activations by name and weight-init schemes."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "selu": nn.SELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "identity": nn.Identity,
    "none": nn.Identity,
}

ACTIVATION_NAMES = tuple(_ACTIVATIONS)
INIT_NAMES = ("default", "xavier", "kaiming", "normal", "orthogonal")


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (``relu``, ``gelu``, ``selu``, ``identity`` ...)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(_ACTIVATIONS)}") from None


def init_weights(module: nn.Module, scheme: str = "default", std: float = 0.1) -> None:
    """Initialise every Linear/Conv weight in ``module``.

    ``default`` keeps PyTorch's init; ``normal`` draws N(0, std²) — the deliberately *poor* "simple
    init" of the gradient-noise paper (arXiv 1511.06807) — with zero biases.
    """
    if scheme not in INIT_NAMES:
        raise ValueError(f"unknown init {scheme!r}; choose one of {list(INIT_NAMES)}")
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif scheme == "orthogonal":
                nn.init.orthogonal_(m.weight)
            elif scheme == "normal":
                nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def lecun_normal_(weight: torch.Tensor) -> None:
    """LeCun normal init, the companion of SELU for self-normalising nets."""
    fan_in = weight.shape[1]
    nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))
