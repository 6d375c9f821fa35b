"""Next-token samplers (registry SAMPLERS): categorical, greedy, temperature, top_k, top_p.

A sampler maps one row of logits (V,) float64 to a vocabulary index::

    idx = sampler(logits, rng=rng, step=k, sample_index=s)

``step`` counts the characters sampled so far in this sample (from 0) and ``sample_index`` is the
sample's number within one ``generate`` call; only the course-seeded categorical sampler uses them,
to re-create the course's per-step reseeding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.errors import DivergenceError
from framework.registry import SAMPLERS, Plugin


def _check_temperature(value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"sampler.temperature must be a finite number > 0, got {value!r}")


def _weights(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Unnormalised probabilities exp((z - max z) / T); equal to p**(1/T) up to a constant.

    Working from the logits instead of log(softmax) keeps -inf out when a probability underflows.
    """
    z = np.asarray(logits, dtype=np.float64)
    top = z.max()
    if not math.isfinite(top):  # max() propagates NaN; +inf would be the max
        raise DivergenceError(
            "the model produced non-finite logits while sampling; the parameters have diverged "
            "(train with a lower learning rate or clipping)"
        )
    w = z - top
    if temperature != 1.0:
        w /= temperature
    np.exp(w, out=w)
    return w


def _draw(weights: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw from unnormalised ``weights``; zero-weight entries are never chosen."""
    cdf = np.cumsum(weights)
    idx = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    if idx >= len(cdf):  # u * total rounded up to total: take the last entry with weight
        idx = int(np.flatnonzero(weights)[-1])
    return idx


class Sampler(Plugin):
    """Base class of sampler plugins."""

    def __call__(
        self, logits: np.ndarray, *, rng: np.random.Generator, step: int, sample_index: int
    ) -> int:
        raise NotImplementedError


@dataclass
class CategoricalConfig:
    course_seed: int | None = None

    def __post_init__(self) -> None:
        if self.course_seed is not None and self.course_seed < 0:
            raise ValueError(
                f"sampler.course_seed must be null or an integer >= 0, got {self.course_seed}"
            )


@SAMPLERS.register("categorical", schema=CategoricalConfig)
class Categorical(Sampler):
    """Draw from softmax(logits).

    With ``course_seed`` set, step k of sample s reseeds a legacy ``RandomState(course_seed + s +
    2k)`` and draws with ``choice(V, p=softmax)``, as the course's ``sample(parameters,
    char_to_ix, seed=course_seed + s)`` does, so the index sequence is the course's.
    """

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        # Reseeding one legacy RandomState draws exactly what a fresh RandomState(seed) draws,
        # and costs ~1.5 us instead of ~90 us (building the generator object each time).
        self._legacy = np.random.RandomState(0) if self.cfg.course_seed is not None else None

    @property
    def course_seed(self) -> int | None:
        """Set: each sample is drawn on its own (framework.nn.generation reads this)."""
        return self.cfg.course_seed

    def __call__(
        self, logits: np.ndarray, *, rng: np.random.Generator, step: int, sample_index: int
    ) -> int:
        w = _weights(logits)
        course_seed = self.course_seed
        if course_seed is None:
            return _draw(w, rng)
        # The course's softmax divides a (V, 1) column by its axis-0 sum; summing the same column
        # shape keeps the summation order, hence the last bits of p, identical.
        p = w / w.reshape(-1, 1).sum(axis=0)
        legacy = self._legacy
        legacy.seed((course_seed + sample_index + 2 * step) % 2**32)
        return int(legacy.choice(len(p), p=p))


@SAMPLERS.register("greedy")
class Greedy(Sampler):
    """Always the most likely index (the first one on ties)."""

    def __call__(
        self, logits: np.ndarray, *, rng: np.random.Generator, step: int, sample_index: int
    ) -> int:
        _weights(logits)  # same non-finite check as the other samplers
        return int(np.argmax(logits))


@dataclass
class TemperatureConfig:
    temperature: float = 1.0

    def __post_init__(self) -> None:
        _check_temperature(self.temperature)


@SAMPLERS.register("temperature", schema=TemperatureConfig)
class Temperature(Sampler):
    """Draw from p**(1/T) renormalised (the course's Shakespeare ``sample(preds, temperature)``)."""

    def __call__(
        self, logits: np.ndarray, *, rng: np.random.Generator, step: int, sample_index: int
    ) -> int:
        return _draw(_weights(logits, self.cfg.temperature), rng)


@dataclass
class TopKConfig:
    k: int = 10
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"sampler.k must be an integer >= 1, got {self.k}")
        _check_temperature(self.temperature)


@SAMPLERS.register("top_k", schema=TopKConfig)
class TopK(Sampler):
    """Temperature sampling restricted to the k most likely indices."""

    def __call__(
        self, logits: np.ndarray, *, rng: np.random.Generator, step: int, sample_index: int
    ) -> int:
        w = _weights(logits, self.cfg.temperature)
        k = self.cfg.k
        if k < len(w):
            keep = np.argpartition(w, len(w) - k)[len(w) - k:]
            return int(keep[_draw(w[keep], rng)])
        return _draw(w, rng)


@dataclass
class TopPConfig:
    p: float = 0.9
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"sampler.p must be in (0, 1], got {self.p}")
        _check_temperature(self.temperature)


@SAMPLERS.register("top_p", schema=TopPConfig)
class TopP(Sampler):
    """Nucleus sampling: the smallest set of most likely indices with mass >= p (after T)."""

    def __call__(
        self, logits: np.ndarray, *, rng: np.random.Generator, step: int, sample_index: int
    ) -> int:
        w = _weights(logits, self.cfg.temperature)
        p = self.cfg.p
        if p >= 1.0:
            return _draw(w, rng)
        order = np.argsort(-w, kind="stable")
        mass = np.cumsum(w[order])
        # Keep every index whose preceding mass is still below p: the most likely one always,
        # and the one that first reaches p.
        n_keep = int(np.searchsorted(mass, p * mass[-1], side="left")) + 1
        keep = order[: min(n_keep, len(order))]
        return int(keep[_draw(w[keep], rng)])


__all__ = ["Categorical", "Greedy", "Sampler", "Temperature", "TopK", "TopP"]
