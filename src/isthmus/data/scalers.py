"""Feature scalers that serialise to plain JSON (a model folder stores its scaler without pickle).

Every scaler is the affine map ``x' = (x - center_) / scale_ + low``, with statistics computed per
feature over the sample axis (axis 0) of the *training* data only: fitting on validation or test
data leaks their statistics into the model. For images ``(N, C, H, W)`` a "feature" is a pixel.
Scalers accept numpy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from isthmus.data.validation import DataError, check_feature_count, validate_array

__all__ = ["Scaler", "StandardScaler", "MinMaxScaler", "IdentityScaler", "make_scaler", "SCALERS"]


def _safe_scale(scale: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Replace a zero spread (a constant feature) by 1, so constants map to ``low`` instead of inf.

    The tolerance is relative to the feature's magnitude: float round-off makes the spread of a
    constant column of 1e6 about 1e-10, not exactly 0.
    """
    tiny = 1e-12 * np.maximum(1.0, np.abs(center))
    return np.where(scale > tiny, scale, 1.0)


class Scaler:
    """Base class: subclasses set ``kind`` and implement :meth:`_stats`."""

    kind: ClassVar[str] = ""
    requires_fit: ClassVar[bool] = True

    def __init__(self) -> None:
        self.center_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.feature_shape_: tuple[int, ...] | None = None

    # ---- subclass hooks ----------------------------------------------------------------------
    def _stats(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def low(self) -> float:
        return 0.0

    def params(self) -> dict[str, Any]:
        """Constructor arguments (saved with the statistics)."""
        return {}

    # ---- public API --------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.feature_shape_ is not None

    def fit(self, X: Any) -> "Scaler":
        """Learn per-feature statistics from training data ``X`` (sample axis first); returns self."""
        arr = validate_array(X, f"{type(self).__name__}.fit").astype(np.float64)
        center, scale = self._stats(arr)
        self.center_, self.scale_ = center, _safe_scale(scale, center)
        self.feature_shape_ = tuple(arr.shape[1:])
        return self

    def _check(self, X: Any, method: str) -> None:
        if self.feature_shape_ is None:  # not fitted
            if self.requires_fit:
                raise DataError(f"{type(self).__name__}.{method} called before fit; call fit(X_train) first")
            return
        check_feature_count(X, self.feature_shape_, f"{type(self).__name__}.{method}")

    def _apply(self, X: Any, inverse: bool) -> Any:
        if self.center_ is None or self.scale_ is None:  # identity, or an unfitted scaler that needs no statistics
            return X
        c: torch.Tensor | np.ndarray  # the statistics, in X's kind and dtype
        s: torch.Tensor | np.ndarray
        if isinstance(X, torch.Tensor):
            dtype = X.dtype if X.is_floating_point() else torch.float32
            c = torch.as_tensor(self.center_, dtype=dtype, device=X.device)
            s = torch.as_tensor(self.scale_, dtype=dtype, device=X.device)
            X = X.to(dtype)
        else:
            X = np.asarray(X)
            np_dtype = X.dtype if X.dtype.kind == "f" else np.dtype(np.float32)
            c, s = self.center_.astype(np_dtype), self.scale_.astype(np_dtype)
            X = X.astype(np_dtype, copy=False)
        return (X - self.low) * s + c if inverse else (X - c) / s + self.low

    def transform(self, X: Any) -> Any:
        """Scale ``X`` with the fitted statistics (numpy in → numpy out, tensor in → tensor out)."""
        self._check(X, "transform")
        return self._apply(X, inverse=False)

    def inverse_transform(self, X: Any) -> Any:
        """Map scaled values (e.g. a reconstruction) back to the original units."""
        self._check(X, "inverse_transform")
        return self._apply(X, inverse=True)

    def fit_transform(self, X: Any) -> Any:
        return self.fit(X).transform(X)

    # ---- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON state: kind, constructor params and (if fitted) the statistics."""
        out: dict[str, Any] = {"kind": self.kind, "params": self.params()}
        if self.feature_shape_ is not None:  # fitted
            out["feature_shape"] = list(self.feature_shape_)
            if self.center_ is not None and self.scale_ is not None:
                out["center"] = self.center_.tolist()
                out["scale"] = self.scale_.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scaler":
        """Rebuild any scaler from :meth:`to_dict` output (``Scaler.from_dict`` dispatches on kind)."""
        kind = data.get("kind")
        if kind not in SCALERS:
            raise DataError(f"scaler dict has kind {kind!r}; known kinds are {sorted(SCALERS)}")
        target = SCALERS[kind]
        if cls is not Scaler and cls is not target:
            raise DataError(f"{cls.__name__}.from_dict got a {kind!r} scaler; use Scaler.from_dict")
        scaler = target(**data.get("params", {}))
        if "feature_shape" in data:
            scaler.feature_shape_ = tuple(int(d) for d in data["feature_shape"])
            if "center" in data:
                scaler.center_ = np.asarray(data["center"], dtype=np.float64).reshape(scaler.feature_shape_)
                scaler.scale_ = np.asarray(data["scale"], dtype=np.float64).reshape(scaler.feature_shape_)
        return scaler

    def __repr__(self) -> str:
        state = f"fitted on {self.feature_shape_}" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())}) [{state}]"


class StandardScaler(Scaler):
    """Zero mean, unit variance per feature (population std, like scikit-learn)."""

    kind = "standard"

    def _stats(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return X.mean(axis=0), X.std(axis=0)


class MinMaxScaler(Scaler):
    """Map each feature's training [min, max] to ``feature_range`` (constant features → its low end)."""

    kind = "minmax"

    def __init__(self, feature_range: tuple[float, float] | list[float] = (0.0, 1.0)) -> None:
        super().__init__()
        lo, hi = (float(v) for v in feature_range)
        if not lo < hi:
            raise DataError(f"MinMaxScaler: feature_range must be (low, high) with low < high, got {feature_range!r}")
        self.feature_range = (lo, hi)

    @property
    def low(self) -> float:
        return self.feature_range[0]

    def params(self) -> dict[str, Any]:
        return {"feature_range": list(self.feature_range)}

    def _stats(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.feature_range
        return X.min(axis=0), (X.max(axis=0) - X.min(axis=0)) / (hi - lo)


class IdentityScaler(Scaler):
    """Leaves data unchanged; still checks the feature count once fitted. Needs no fit."""

    kind = "none"
    requires_fit = False

    def fit(self, X: Any) -> "IdentityScaler":
        self.feature_shape_ = tuple(validate_array(X, "IdentityScaler.fit").shape[1:])
        return self


SCALERS: dict[str, type[Scaler]] = {"standard": StandardScaler, "minmax": MinMaxScaler, "none": IdentityScaler}


def make_scaler(name: str | None, **kwargs: Any) -> Scaler:
    """A new scaler by name: ``"standard"``, ``"minmax"`` (``feature_range=``) or ``"none"``/None."""
    key = "none" if name in (None, "identity") else name
    if key not in SCALERS:
        raise DataError(f"unknown scaler {name!r}; choose one of {sorted(SCALERS)}")
    return SCALERS[key](**kwargs)
