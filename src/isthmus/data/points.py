"""Procedural point clouds: ten surface classes in confusable pairs, with the nuisances of scanned objects.

A CPU-sized stand-in for ShapeNet/ModelNet (Point-MAE, seed 44; no 3-D data set ships offline). Classes
(pairs that differ by one property): sphere/ellipsoid, cube/box, cylinder/capsule, cone/pyramid and a thin
and a thick torus. Nuisances (referee card): anisotropic scale 0.6–1.4 per axis, a rotation about the up
axis plus a tilt ≤ 15°, Gaussian jitter σ 0.01, and with probability 0.5 a half-space occlusion that removes
the points beyond a random plane (a one-sided scan). Every cloud is centred and scaled into the unit ball.
:func:`make_point_clouds` draws labelled clouds; ``unions=True`` draws unlabelled two-primitive compounds
(the "ShapeNet ⊃ ModelNet" pretraining pool).
"""

from __future__ import annotations

import numpy as np

__all__ = ["POINT_CLASSES", "sample_surface", "make_point_clouds"]

POINT_CLASSES = ("sphere", "ellipsoid", "cube", "box", "cylinder", "capsule", "cone", "pyramid", "torus", "thick_torus")


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cuboid(rng: np.random.Generator, n: int, half: np.ndarray) -> np.ndarray:
    areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]]).repeat(2)
    face = rng.choice(6, size=n, p=areas / areas.sum())
    p = rng.uniform(-1, 1, size=(n, 3))
    axis, sign = face // 2, np.where(face % 2 == 0, -1.0, 1.0)
    p[np.arange(n), axis] = sign
    return p * half


def _cylinder(rng: np.random.Generator, n: int, r: float, h: float, caps: str) -> np.ndarray:
    """Side of a cylinder (radius r, half-height h) closed by flat disks or hemispheres."""
    side = 2 * np.pi * r * 2 * h
    cap = 2 * (np.pi * r * r if caps == "flat" else 2 * np.pi * r * r)
    on_side = rng.uniform(size=n) < side / (side + cap)
    out = np.empty((n, 3))
    t = rng.uniform(0, 2 * np.pi, size=n)
    out[:, 0], out[:, 1], out[:, 2] = r * np.cos(t), r * np.sin(t), rng.uniform(-h, h, size=n)
    m = ~on_side
    top = np.where(rng.uniform(size=m.sum()) < 0.5, 1.0, -1.0)
    if caps == "flat":
        rad = r * np.sqrt(rng.uniform(size=m.sum()))
        out[m, 0], out[m, 1], out[m, 2] = rad * np.cos(t[m]), rad * np.sin(t[m]), top * h
    else:
        u = _unit(rng, int(m.sum())) * r
        u[:, 2] = np.abs(u[:, 2]) * top
        out[m] = u + np.c_[np.zeros((m.sum(), 2)), top * h]
    return out


def _cone(rng: np.random.Generator, n: int, r: float, h: float, sides: int | None) -> np.ndarray:
    """A cone (``sides=None``) or a pyramid with a regular ``sides``-gon base; apex at +h/2, base at -h/2."""
    slant = np.sqrt(r * r + h * h)
    lateral, base = np.pi * r * slant, np.pi * r * r
    on_lat = rng.uniform(size=n) < lateral / (lateral + base)
    frac = np.where(on_lat, np.sqrt(rng.uniform(size=n)), np.sqrt(rng.uniform(size=n)))  # area-uniform radius
    t = rng.uniform(0, 2 * np.pi, size=n)
    if sides is not None:  # radius of the polygon's edge in direction t (so points lie on the flat faces)
        seg = 2 * np.pi / sides
        rad = r * np.cos(seg / 2) / np.cos((t % seg) - seg / 2)
    else:
        rad = np.full(n, r)
    z = np.where(on_lat, h / 2 - frac * h, -h / 2)
    return np.c_[frac * rad * np.cos(t), frac * rad * np.sin(t), z]


def _torus(rng: np.random.Generator, n: int, big: float, small: float) -> np.ndarray:
    u, v = rng.uniform(0, 2 * np.pi, size=(2, n))
    ring = big + small * np.cos(v)
    return np.c_[ring * np.cos(u), ring * np.sin(u), small * np.sin(v)]


def sample_surface(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points on the canonical surface of class ``name`` (before nuisances), ``(n, 3)``."""
    if name == "sphere":
        return _unit(rng, n)
    if name == "ellipsoid":
        return _unit(rng, n) * np.array([1.0, 0.65, 0.45])
    if name == "cube":
        return _cuboid(rng, n, np.array([1.0, 1.0, 1.0]))
    if name == "box":
        return _cuboid(rng, n, np.array([1.0, 0.6, 0.35]))
    if name == "cylinder":
        return _cylinder(rng, n, 0.5, 1.0, "flat")
    if name == "capsule":
        return _cylinder(rng, n, 0.5, 0.75, "round")
    if name == "cone":
        return _cone(rng, n, 0.8, 1.6, None)
    if name == "pyramid":
        return _cone(rng, n, 0.8, 1.6, 4)
    if name == "torus":
        return _torus(rng, n, 1.0, 0.25)
    if name == "thick_torus":
        return _torus(rng, n, 1.0, 0.5)
    raise ValueError(f"unknown point-cloud class {name!r}; known: {POINT_CLASSES}")


def _rotation(rng: np.random.Generator, max_tilt_deg: float) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    axis = np.array([np.cos(b := rng.uniform(0, 2 * np.pi)), np.sin(b), 0.0])
    t = np.deg2rad(rng.uniform(0, max_tilt_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    tilt = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k  # Rodrigues
    return tilt @ rz


def _normalise(p: np.ndarray) -> np.ndarray:
    p = p - p.mean(0)
    return p / np.linalg.norm(p, axis=1).max()


def _one(
    rng: np.random.Generator, names: list[str], n_points: int, occlusion: float, max_tilt: float, jitter: float
) -> np.ndarray:
    parts = []
    for i, name in enumerate(names):
        m = 2 * n_points // len(names)
        p = sample_surface(name, m, rng) * rng.uniform(0.6, 1.4, size=3)
        p = p @ _rotation(rng, max_tilt).T
        if i:  # a second primitive beside the first: a compound object
            p = 0.6 * p + _unit(rng, 1) * rng.uniform(0.8, 1.4)
        parts.append(p)
    p = np.concatenate(parts)
    if rng.uniform() < occlusion:  # drop the points beyond a random plane (about a quarter of them)
        d = _unit(rng, 1)[0]
        proj = p @ d
        p = p[proj <= np.quantile(proj, rng.uniform(0.65, 0.85))]
    p = p[rng.choice(len(p), n_points, replace=False)] + rng.normal(scale=jitter, size=(n_points, 3))
    return _normalise(p)


def make_point_clouds(
    n: int,
    n_points: int = 256,
    seed: int = 0,
    classes: tuple[str, ...] = POINT_CLASSES,
    unions: bool = False,
    occlusion: float = 0.5,
    max_tilt_deg: float = 15.0,
    jitter: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clouds ``(n, n_points, 3)`` float32 in the unit ball and labels ``(n,)`` (indices into ``classes``,
    balanced round-robin; ``-1`` for the unlabelled two-primitive unions drawn when ``unions``)."""
    if n < 1 or n_points < 8:
        raise ValueError(f"need n >= 1 clouds of >= 8 points, got n={n}, n_points={n_points}")
    if not 0.0 <= occlusion <= 1.0:
        raise ValueError(f"occlusion is a probability, got {occlusion}")
    for c in classes:
        sample_surface(c, 1, np.random.default_rng(0))  # validates the names up front
    rng = np.random.default_rng(seed)
    out = np.empty((n, n_points, 3), np.float32)
    y = np.empty(n, np.int64)
    for i in range(n):
        if unions:
            pick = rng.choice(len(classes), size=2)
            out[i], y[i] = _one(rng, [classes[j] for j in pick], n_points, occlusion, max_tilt_deg, jitter), -1
        else:
            y[i] = i % len(classes)
            out[i] = _one(rng, [classes[y[i]]], n_points, occlusion, max_tilt_deg, jitter)
    return out, y
