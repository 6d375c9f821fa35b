"""Gradient clipping plugins (registry CLIPS): ``value`` (the course), ``norm`` and ``none``.

A clip object is called once per training step with the gradient dict, clips it in place and
returns :class:`ClipStats` for logging. Every array is visited with whole-array NumPy calls only
(a BLAS dot for the squared norm, min/max reductions, and the clip itself only for arrays that
actually exceed the bound), so clipping costs a few passes over memory and no Python loops over
elements. Scalars are Python floats so float32 gradients stay float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from framework.registry import CLIPS, Plugin


@dataclass(frozen=True)
class ClipStats:
    norm: float  # global L2 norm of all gradients before clipping
    fraction_clipped: float  # value: share of elements changed; norm: 1.0 if rescaled else 0.0


def _positive(field: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{field} must be a finite number > 0, got {value!r}")


def _sum_of_squares(a: np.ndarray) -> float:
    """Sum of squares of one array as a Python float (float64 accumulation if float32 overflows)."""
    flat = a.reshape(-1)
    with np.errstate(over="ignore"):  # overflow is handled below, not worth a warning
        sq = float(np.dot(flat, flat))
    if not math.isfinite(sq) and a.dtype != np.float64 and bool(np.isfinite(a).all()):
        # float32 squares overflow above ~1.8e19; an exploding (but finite) gradient must still
        # report a finite norm, or norm clipping could not rescale it.
        flat64 = flat.astype(np.float64)
        sq = float(np.dot(flat64, flat64))
    return sq


def global_norm(grads: Mapping[str, np.ndarray]) -> float:
    """Global L2 norm over every array of ``grads``."""
    return math.sqrt(sum(_sum_of_squares(g) for g in grads.values()))


class Clip(Plugin):
    """Base class of clip plugins: ``clip(grads) -> ClipStats``, modifying ``grads`` in place."""

    def __call__(self, grads: Mapping[str, np.ndarray]) -> ClipStats:
        raise NotImplementedError


@dataclass
class ValueClipConfig:
    max_value: float = 5.0

    def __post_init__(self) -> None:
        _positive("clip.max_value", self.max_value)


@CLIPS.register("value", schema=ValueClipConfig)
class ValueClip(Clip):
    """Element-wise clamp to [-max_value, max_value] (the course's ``clip`` and min-char-rnn)."""

    def __call__(self, grads: Mapping[str, np.ndarray]) -> ClipStats:
        m = self.cfg.max_value
        total_sq = 0.0
        changed = 0
        size = 0
        for g in grads.values():
            total_sq += _sum_of_squares(g)
            size += g.size
            if g.size == 0:
                continue
            # Cheap reductions first: most steps clip nothing, and then no mask is built.
            if g.max() > m or g.min() < -m:
                changed += int(np.count_nonzero(g > m)) + int(np.count_nonzero(g < -m))
                np.clip(g, -m, m, out=g)
        return ClipStats(norm=math.sqrt(total_sq), fraction_clipped=changed / size if size else 0.0)


@dataclass
class NormClipConfig:
    max_norm: float = 5.0

    def __post_init__(self) -> None:
        _positive("clip.max_norm", self.max_norm)


@CLIPS.register("norm", schema=NormClipConfig)
class NormClip(Clip):
    """Rescale all gradients together so their global L2 norm is at most ``max_norm``."""

    def __call__(self, grads: Mapping[str, np.ndarray]) -> ClipStats:
        norm = global_norm(grads)
        max_norm = self.cfg.max_norm
        # A non-finite norm is left alone (rescaling by 0 or NaN would hide the blow-up); the
        # trainer sees the reported NaN/Inf and stops with a DivergenceError.
        if not (math.isfinite(norm) and norm > max_norm):
            return ClipStats(norm=norm, fraction_clipped=0.0)
        scale = max_norm / norm
        for g in grads.values():
            np.multiply(g, scale, out=g)
        return ClipStats(norm=norm, fraction_clipped=1.0)


@CLIPS.register("none")
class NoClip(Clip):
    """No clipping; still reports the gradient norm for logging."""

    def __call__(self, grads: Mapping[str, np.ndarray]) -> ClipStats:
        return ClipStats(norm=global_norm(grads), fraction_clipped=0.0)


__all__ = ["Clip", "ClipStats", "NoClip", "NormClip", "ValueClip", "global_norm"]
