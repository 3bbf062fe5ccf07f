"""A procedural, dSprites-like image generator with known factors of variation.

Each image shows one white shape on black, described by five factors:
``shape`` (categorical), ``scale``, ``rotation`` (radians, counter-clockwise), ``x`` (left → right)
and ``y`` (top → bottom), positions in ``[0, 1]``. Every factor is drawn uniformly from a value
grid, as in dSprites (Matthey et al. 2017), so discrete disentanglement metrics (MIG, DCI) apply;
any factor can be fixed, so a recipe can ask for exactly K = 1..5 varying factors.

Rendering is a coverage test on the pixel grid in numpy: each pixel centre is mapped into the
shape's own frame (translate, rotate, divide by radius) and tested against the shape's implicit
inequality. ``antialias=True`` tests a 4x4 sub-pixel grid and averages (grey edges).
Note, as in dSprites: rotation is only identifiable up to the shape's symmetry (90° for a square).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, cast

import numpy as np

from isthmus.config import Config, ConfigError
from isthmus.data.table import Table

__all__ = ["ShapesConfig", "make_shapes", "render_shapes", "SHAPES", "FACTOR_NAMES"]

FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
_CHUNK = 1024  # images rendered at once: bounds the (n, P, P) temporaries to a few MB


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)  # corners on the unit circle


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + 4.0 * v * v <= 1.0  # semi-axes 1 and 0.5: elongated, so rotation shows


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # equilateral, circumradius 1, apex up: inside all three edges (inradius 0.5)
    s = math.sqrt(3) / 2
    return (v >= -0.5) & (s * u + 0.5 * v <= 0.5) & (-s * u + 0.5 * v <= 0.5)


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # (x²+y²-1)³ - x²y³ <= 0, shifted so its centroid (y≈0.2935) is the origin and scaled by
    # its largest centroid distance (≈1.293) so it fits the unit circle like the other shapes
    x, y = u * 1.293, v * 1.293 + 0.2935
    r = x * x + y * y - 1.0
    return r * r * r - x * x * y * y * y <= 0.0


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "square": _square,
    "ellipse": _ellipse,
    "heart": _heart,
    "triangle": _triangle,
}


@dataclass
class ShapesConfig(Config):
    """Everything that defines a :func:`make_shapes` data set (stored in ``meta['config']``).

    ``vary`` names the factors that vary (default: all five); the rest are held at ``fixed`` values
    or the defaults shape=first, scale=max, rotation=0, x=y=0.5. ``n_values`` sets grid sizes
    (defaults as dSprites: scale 6, rotation 40, x 32, y 32). ``max_radius`` is the radius of a
    scale-1 shape as a fraction of the image side.
    """

    n: int = 10000
    image_size: int = 32
    seed: int = 0
    shapes: tuple[str, ...] = ("square", "ellipse", "heart")
    vary: list[str] | None = None
    fixed: dict[str, float | str] = field(default_factory=dict)
    n_values: dict[str, int] = field(default_factory=dict)
    scale_range: tuple[float, float] = (0.5, 1.0)
    rotation_range: tuple[float, float] = (0.0, 2 * math.pi)
    max_radius: float = 0.25
    antialias: bool = False

    def validate(self) -> None:
        name = "ShapesConfig"
        if self.n < 1 or self.image_size < 4:
            raise ConfigError(f"{name}: need n >= 1 and image_size >= 4, got n={self.n}, image_size={self.image_size}")
        bad = [s for s in self.shapes if s not in SHAPES]
        if not self.shapes or bad or len(set(self.shapes)) != len(self.shapes):
            raise ConfigError(f"{name}.shapes: {list(self.shapes)} must be distinct names from {sorted(SHAPES)}")
        for key in list(self.fixed) + list(self.n_values) + list(self.vary or []):
            if key not in FACTOR_NAMES:
                raise ConfigError(f"{name}: unknown factor {key!r}; factors are {list(FACTOR_NAMES)}")
        both = set(self.fixed) & set(self.vary or [])
        if both:
            raise ConfigError(f"{name}: factor(s) {sorted(both)} are both in vary and fixed; choose one")
        lo, hi = self.scale_range
        if not 0 < lo <= hi or not 0 < self.max_radius * hi < 0.5:
            raise ConfigError(
                f"{name}: need 0 < scale_range[0] <= scale_range[1] and max_radius*scale < 0.5 "
                f"(shape inside the image); got scale_range={self.scale_range}, max_radius={self.max_radius}"
            )
        if any(v < 1 for v in self.n_values.values()):
            raise ConfigError(f"{name}.n_values: grid sizes must be >= 1, got {self.n_values}")
        if "scale" in self.fixed and not 0 < self.max_radius * float(self.fixed["scale"]) < 0.5:
            raise ConfigError(
                f"{name}.fixed['scale']={self.fixed['scale']} must be > 0 and keep the shape "
                f"inside the image (max_radius*scale < 0.5)"
            )
        for key in ("x", "y"):
            if key in self.fixed and not 0.0 <= float(self.fixed[key]) <= 1.0:
                raise ConfigError(f"{name}.fixed[{key!r}] must lie in [0, 1], got {self.fixed[key]}")

    def factor_grids(self) -> dict[str, np.ndarray]:
        """The value grid of each factor (one value for a fixed factor); shape values are indices."""
        n = {"scale": 6, "rotation": 40, "x": 32, "y": 32, **self.n_values}
        r0, r1 = self.rotation_range
        grids = {
            "shape": np.arange(len(self.shapes), dtype=np.float64),
            "scale": np.linspace(*self.scale_range, n["scale"]),
            # endpoint excluded: with the default full turn, 2π would duplicate 0
            "rotation": r0 + (r1 - r0) * np.arange(n["rotation"]) / n["rotation"],
            "x": np.linspace(0.0, 1.0, n["x"]),
            "y": np.linspace(0.0, 1.0, n["y"]),
        }
        defaults = {"shape": 0.0, "scale": self.scale_range[1], "rotation": 0.0, "x": 0.5, "y": 0.5}
        for key in FACTOR_NAMES:
            if key in self.fixed:
                grids[key] = np.array([self._fixed_value(key)])
            elif self.vary is not None and key not in self.vary:
                grids[key] = np.array([defaults[key]])
        return grids

    def _fixed_value(self, key: str) -> float:
        value = self.fixed[key]
        if key != "shape":
            return float(value)
        if isinstance(value, str):
            if value not in self.shapes:
                raise ConfigError(f"ShapesConfig.fixed['shape']={value!r} is not in shapes {list(self.shapes)}")
            return float(self.shapes.index(value))
        if not 0 <= int(value) < len(self.shapes) or float(value) != int(value):
            raise ConfigError(f"ShapesConfig.fixed['shape'] index {value} out of range for {list(self.shapes)}")
        return float(value)


def _render_chunk(
    f: np.ndarray, size: int, shapes: Sequence[str], max_radius: float, ss: int, scale_max: float
) -> np.ndarray:
    """Render factor rows ``f`` (n, 5) into (n, size, size) coverage in [0, 1]."""
    n, p = len(f), size * ss
    coords = (np.arange(p, dtype=np.float32) + 0.5) / ss - 0.5  # sub-pixel centres, in pixel units
    r_max = max_radius * size * scale_max
    # keep the largest shape's circle inside the image: centres span [r_max - .5, size - .5 - r_max]
    span = size - 2 * r_max
    out = np.zeros((n, p, p), dtype=np.float32)
    for k, name in enumerate(shapes):
        idx = np.flatnonzero(f[:, 0] == k)
        if len(idx) == 0:
            continue
        scale, rot, x, y = (f[idx, j].astype(np.float32)[:, None, None] for j in range(1, 5))
        radius = max_radius * size * scale
        cx = r_max - 0.5 + x * span
        cy = r_max - 0.5 + y * span
        du = (coords[None, None, :] - cx) / radius  # (n, 1, P): columns
        dv = -(coords[None, :, None] - cy) / radius  # (n, P, 1): rows, flipped so +v is up
        c, s = np.cos(rot), np.sin(rot)
        out[idx] = SHAPES[name](c * du + s * dv, c * dv - s * du)  # rotate by -θ into the shape frame
    if ss > 1:
        out = out.reshape(n, size, ss, size, ss).mean(axis=(2, 4))
    return out


def render_shapes(
    factors: np.ndarray,
    image_size: int = 32,
    shapes: Sequence[str] = ("square", "ellipse", "heart"),
    max_radius: float = 0.25,
    antialias: bool = False,
    scale_max: float | None = None,
) -> np.ndarray:
    """Render factor rows ``(N, 5)`` = (shape index, scale, rotation, x, y) as ``(N, 1, S, S)`` float32.

    ``scale_max`` (default: the largest scale in ``factors``) sets the margin that keeps shapes in
    frame; pass the data set's ``scale_range[1]`` so positions mean the same across calls.
    """
    f = np.asarray(factors, dtype=np.float64).reshape(-1, 5)
    scale_max = float(scale_max if scale_max is not None else (f[:, 1].max() if len(f) else 1.0))
    if not 0 < max_radius * scale_max < 0.5:
        raise ConfigError(
            f"render_shapes: max_radius*scale = {max_radius * scale_max} must lie in (0, 0.5) "
            "for the shape to fit inside the image"
        )
    ss = 4 if antialias else 1
    out = np.empty((len(f), 1, image_size, image_size), dtype=np.float32)
    for start in range(0, len(f), _CHUNK):
        out[start : start + _CHUNK, 0] = _render_chunk(
            f[start : start + _CHUNK], image_size, shapes, max_radius, ss, scale_max
        )
    return out


def make_shapes(
    n: int = 10000,
    image_size: int = 32,
    seed: int = 0,
    shapes: Sequence[str] = ("square", "ellipse", "heart"),
    *,
    vary: Sequence[str] | None = None,
    fixed: dict[str, Any] | None = None,
    n_values: dict[str, int] | None = None,
    scale_range: tuple[float, float] = (0.5, 1.0),
    rotation_range: tuple[float, float] = (0.0, 2 * math.pi),
    max_radius: float = 0.25,
    antialias: bool = False,
) -> Table:
    """``n`` random shape images with known factors (see :class:`ShapesConfig` for the arguments).

    Returns a Table with X ``(n, 1, S, S)`` float32 in [0, 1], y = shape index, and meta:
    ``factors`` (n, 5) values, ``factor_indices`` (n, 5) grid indices, ``factor_names``,
    ``factor_values`` (each grid), ``varying`` (factors with more than one value), ``classes``, ``config``.
    """
    cfg = ShapesConfig(
        n=n,
        image_size=image_size,
        seed=seed,
        shapes=tuple(shapes),
        vary=list(vary) if vary is not None else None,
        fixed=dict(fixed or {}),
        n_values=dict(n_values or {}),
        scale_range=cast(tuple[float, float], tuple(scale_range)),
        rotation_range=cast(tuple[float, float], tuple(rotation_range)),
        max_radius=max_radius,
        antialias=antialias,
    )
    return shapes_from_config(cfg)


def shapes_from_config(cfg: ShapesConfig) -> Table:
    """Generate the data set a :class:`ShapesConfig` describes (deterministic given ``cfg.seed``)."""
    grids = cfg.factor_grids()
    rng = np.random.default_rng(cfg.seed)
    indices = np.stack([rng.integers(len(grids[k]), size=cfg.n) for k in FACTOR_NAMES], axis=1)
    factors = np.stack([grids[k][indices[:, j]] for j, k in enumerate(FACTOR_NAMES)], axis=1)
    # margin from the configured range (not this draw), so a position means the same pixel in every data set
    scale_max = max(cfg.scale_range[1], float(grids["scale"].max()))
    X = render_shapes(factors, cfg.image_size, cfg.shapes, cfg.max_radius, cfg.antialias, scale_max=scale_max)
    meta = {
        "source": "isthmus.data.make_shapes",
        "factors": factors,
        "factor_indices": indices.astype(np.int64),
        "factor_names": list(FACTOR_NAMES),
        "factor_values": {k: grids[k].tolist() for k in FACTOR_NAMES},
        "varying": [k for k in FACTOR_NAMES if len(grids[k]) > 1],
        "classes": list(cfg.shapes),
        "image_shape": X.shape[1:],
        "config": cfg.to_dict(),
    }
    return Table(X, factors[:, 0].astype(np.int64), meta=meta)  # y = shape id (not its grid index)
