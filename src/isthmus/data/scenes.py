"""Procedural multispectral scenes with known geological units (ground truth for map clustering).

A scene is a ``size × size`` map of ``n_units`` "rock units": Voronoi cells whose coordinates are
warped by smooth noise, so boundaries curve like real contacts. Each unit has an endmember
spectrum over ``n_bands`` bands. Every pixel is a mixture of endmembers: its own unit dominates,
neighbouring units blend in across a soft boundary, and a smooth "regolith blanket" of all
endmembers covers up to ``cover`` of each pixel (so classes overlap, as on real ground).

``nonlinearity`` (``t >= 0``) switches on three physically motivated non-linear effects, each
scaled by ``t`` and all exactly off at ``t = 0``:

* **intimate mixing** — endmembers mix linearly in single-scattering-albedo space, not in
  reflectance (a Hapke-like transfer ``r(w) = w / (1 + 2 sqrt(1 - w))^2``, μ = μ0 = 1); the
  pixel is ``(1 - min(t, 1)) · linear + min(t, 1) · intimate``;
* **topographic shading** — all bands multiplied by ``1 + 0.4 t · hillshade(x, y)``;
* **band saturation** — ``x → (1 - exp(-κ x)) / κ`` with ``κ = 2.5 t``.

At ``nonlinearity = 0`` the bands are *exactly* ``abundances @ endmembers + noise``: the linear
mixing control on which PCA should do as well as any autoencoder (seed paper 3, arXiv 2404.02180).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Scene", "make_scene", "hapke_albedo_to_reflectance", "hapke_reflectance_to_albedo"]


@dataclass
class Scene:
    """One generated scene. Arrays are ``(H, W, ...)``; use :meth:`pixels` for ``(H*W, B)`` tables."""

    bands: np.ndarray  # (H, W, B) float32: what a sensor sees
    labels: np.ndarray  # (H, W) int64 in [0, n_units): the geological unit (ground truth)
    abundances: np.ndarray  # (H, W, K) float32, each pixel on the simplex
    endmembers: np.ndarray  # (K, B) float32 reflectance spectra in (0, 1)
    linear_mix: np.ndarray  # (H, W, B) float32 = abundances @ endmembers
    noise: np.ndarray  # (H, W, B) float32 additive sensor noise (already in ``bands``)
    nonlinearity: float
    seed: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape  # type: ignore[return-value]

    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X (H*W, B) float32, y (H*W,) int64)``: the per-pixel table a clustering pipeline uses."""
        h, w, b = self.bands.shape
        return self.bands.reshape(h * w, b), self.labels.reshape(h * w)


def hapke_albedo_to_reflectance(w: np.ndarray) -> np.ndarray:
    """Simplified Hapke reflectance of single-scattering albedo ``w`` ∈ [0, 1] (μ = μ0 = 1)."""
    w = np.clip(w, 0.0, 1.0)
    return w / (1.0 + 2.0 * np.sqrt(1.0 - w)) ** 2


def hapke_reflectance_to_albedo(r: np.ndarray) -> np.ndarray:
    """Closed-form inverse of :func:`hapke_albedo_to_reflectance` (solve the quadratic in sqrt(1-w))."""
    r = np.clip(r, 0.0, 1.0)
    s = (np.sqrt(3.0 * r + 1.0) - 2.0 * r) / (4.0 * r + 1.0)  # s = sqrt(1 - w)
    return 1.0 - s**2


def make_scene(
    size: int = 128,
    n_units: int = 5,
    n_bands: int = 10,
    nonlinearity: float = 0.0,
    seed: int = 0,
    noise_std: float = 0.02,
    cover: float = 0.35,
    boundary_width: float = 0.02,
    warp: float = 0.06,
) -> Scene:
    """Generate a scene; the same arguments always give the same arrays.

    ``cover`` is the largest fraction of a pixel hidden under the regolith blanket (< 0.5 keeps
    the own unit dominant), ``boundary_width`` the softness of unit contacts and ``warp`` the
    amplitude of the boundary warping, both in units of the image side.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if n_units < 2 or n_bands < 2:
        raise ValueError(f"need n_units >= 2 and n_bands >= 2, got {n_units}, {n_bands}")
    if nonlinearity < 0:
        raise ValueError(f"nonlinearity must be >= 0, got {nonlinearity}")
    if not 0.0 <= cover < 0.5:
        raise ValueError(f"cover must be in [0, 0.5), got {cover}")
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")  # (H, W)

    membership, labels = _units(rng, xx, yy, n_units, boundary_width, warp)  # (H, W, K), (H, W)
    blanket = _softmax(np.stack([2.0 * _smooth_field(rng, xx, yy) for _ in range(n_units)], -1))
    cover_frac = cover * 0.5 * (1.0 + _smooth_field(rng, xx, yy))[..., None]  # (H, W, 1) in [0, cover]
    abundances = (1.0 - cover_frac) * membership + cover_frac * blanket  # rows sum to 1

    endmembers = _endmembers(rng, n_units, n_bands)  # (K, B)
    linear = abundances @ endmembers  # (H, W, B)
    hill = _hillshade(rng, xx, yy)  # drawn even when unused, so t only changes the physics
    noise = (noise_std * rng.standard_normal(linear.shape)).astype(np.float32)

    x = _nonlinear_effects(linear, abundances, endmembers, hill, float(nonlinearity))
    bands = (x + noise).astype(np.float32)
    return Scene(
        bands=bands,
        labels=labels.astype(np.int64),
        abundances=abundances.astype(np.float32),
        endmembers=endmembers.astype(np.float32),
        linear_mix=linear.astype(np.float32),
        noise=noise,
        nonlinearity=float(nonlinearity),
        seed=int(seed),
    )


# ---- pieces ----------------------------------------------------------------------------------------
def _nonlinear_effects(linear, abundances, endmembers, hill, t: float) -> np.ndarray:
    if t == 0.0:
        return linear  # the linear-mixing control: exactly abundances @ endmembers
    tm = min(t, 1.0)
    albedo = hapke_reflectance_to_albedo(endmembers)  # (K, B)
    intimate = hapke_albedo_to_reflectance(abundances @ albedo)  # mix in albedo space
    x = (1.0 - tm) * linear + tm * intimate
    x = x * np.clip(1.0 + 0.4 * t * hill, 0.2, None)[..., None]  # shading scales every band
    kappa = 2.5 * t
    return (1.0 - np.exp(-kappa * x)) / kappa  # per-band saturation


def _units(rng, xx, yy, k: int, width: float, warp: float, min_share: float = 0.03):
    """Warped Voronoi cells; resample the sites until every unit covers >= ``min_share`` of the map."""
    for _ in range(200):
        sites = _spread_points(rng, k)
        u = xx + warp * _smooth_field(rng, xx, yy)
        v = yy + warp * _smooth_field(rng, xx, yy)
        d = np.sqrt((u[..., None] - sites[:, 0]) ** 2 + (v[..., None] - sites[:, 1]) ** 2)  # (H, W, K)
        labels = d.argmin(-1)
        shares = np.bincount(labels.ravel(), minlength=k) / labels.size
        if shares.min() >= min_share:
            membership = _softmax(-(d - d.min(-1, keepdims=True)) / width)
            return membership, labels
    raise RuntimeError("could not place units covering the map; lower n_units or raise size")


def _spread_points(rng, k: int) -> np.ndarray:
    """Dart throwing: k sites in [0.05, 0.95]² at least ~0.5/sqrt(k) apart (relaxed if needed)."""
    r = 0.5 / np.sqrt(k)
    pts: list[np.ndarray] = []
    tries = 0
    while len(pts) < k:
        p = rng.uniform(0.05, 0.95, 2)
        tries += 1
        if all(np.hypot(*(p - q)) >= r for q in pts) or tries > 2000:
            pts.append(p)
    return np.asarray(pts)


def _smooth_field(rng, xx, yy, n_modes: int = 10, max_freq: int = 4) -> np.ndarray:
    """A smooth random field in [-1, 1]: a few low-frequency Fourier modes with 1/|f| amplitudes."""
    f = np.zeros_like(xx)
    for _ in range(n_modes):
        fx, fy = rng.integers(-max_freq, max_freq + 1, 2)
        if fx == 0 and fy == 0:
            fx = 1
        phase = rng.uniform(0, 2 * np.pi)
        f += np.cos(2 * np.pi * (fx * xx + fy * yy) + phase) / np.hypot(fx, fy)
    f -= f.min()
    return 2.0 * f / max(f.max(), 1e-12) - 1.0


def _hillshade(rng, xx, yy) -> np.ndarray:
    """Illumination of a smooth random terrain from a random azimuth, scaled to [-1, 1]."""
    z = _smooth_field(rng, xx, yy, n_modes=12, max_freq=6)
    gy, gx = np.gradient(z)
    az = rng.uniform(0, 2 * np.pi)
    shade = np.cos(az) * gx + np.sin(az) * gy
    return shade / max(np.abs(shade).max(), 1e-12)


def _endmembers(rng, k: int, b: int, min_angle_deg: float = 8.0) -> np.ndarray:
    """Smooth reflectance spectra in (0.05, 0.7): a sloped continuum with Gaussian absorption bands.

    Spectra are redrawn until every pair differs by at least ``min_angle_deg`` spectral angle.
    """
    lam = np.linspace(0, 1, b)
    for _ in range(500):
        base = rng.uniform(0.15, 0.5, (k, 1)) + rng.uniform(-0.15, 0.15, (k, 1)) * lam
        for _ in range(2):
            centre, depth = rng.uniform(0, 1, (k, 1)), rng.uniform(0.05, 0.2, (k, 1))
            base = base - depth * np.exp(-0.5 * ((lam - centre) / 0.12) ** 2)
        e = np.clip(base, 0.05, 0.7)
        unit = e / np.linalg.norm(e, axis=1, keepdims=True)
        cos = np.clip(unit @ unit.T, -1, 1)
        angles = np.degrees(np.arccos(cos[np.triu_indices(k, 1)]))
        if angles.min() >= min_angle_deg:
            return e
    return e  # pragma: no cover - only for extreme k/b


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)
