"""The ``series`` feed: windows of a real-valued series and the values that follow them.

``inputs`` (window, B, D) float standardised values and ``targets`` (B, horizon, D): the
``horizon`` values right after each window.  Training windows have all their targets in the
training part.  Validation windows end just before each validation value, so every validation
value is the first (one-step) target of exactly one window, with its true history (which may lie
in the training part); targets past the series end are 0 and ``mask`` False.  With
``difference=d`` > 0 the values are the series' ``d``-th differences
(:mod:`framework.data.corpora.differencing`), standardised with the training differences'
statistics; indices stay those of the series, and the first window starts where differences
exist.  As every feed, ``feed.batch(step)`` is a pure function of the step and the seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.data.corpora import differencing
from framework.data.corpora.series import SeriesCorpus
from framework.data.feeds.base import Feed, check_corpus, positive
from framework.errors import ConfigError
from framework.registry import FEEDS


@dataclass(frozen=True, eq=False)
class ForecastBatch:
    inputs: np.ndarray  # (window, B, D) standardised history
    targets: np.ndarray  # (B, horizon, D) standardised next values (0 where mask is False)
    mask: np.ndarray  # (B, horizon) bool: the target exists
    starts: np.ndarray  # (B,) series index of each window's first target
    reset: bool = True

    @property
    def size(self) -> int:
        return len(self.starts)


@FEEDS.register("series")
class ForecastFeed(Feed):
    """Windows of ``window`` past values predicting the next ``horizon`` values."""

    @classmethod
    def from_config(cls, cfg: Any, *, corpus: SeriesCorpus, batch_size: int, seed: int,
                    seq_len: int | None = None, window: int | None = None, horizon: int = 1,
                    dtype: str | np.dtype = "float64", difference: int = 0,
                    **_: Any) -> ForecastFeed:
        """``window`` defaults to ``seq_len``: the number of past values a model reads."""
        check_corpus(cls.name, corpus, ("series",), "choose a dataset of real-valued series")
        return cls(corpus, window=seq_len if window is None else window, horizon=horizon,
                   batch_size=batch_size, seed=seed, dtype=dtype, difference=difference)

    def __init__(self, corpus: SeriesCorpus, *, window: int, horizon: int = 1, batch_size: int,
                 seed: int, dtype: str | np.dtype = "float64", difference: int = 0) -> None:
        self.window = positive("task.window", window)
        self.horizon = positive("task.horizon", horizon)
        most = differencing.MAX_DIFFERENCE
        if (isinstance(difference, bool) or not isinstance(difference, int | np.integer)
                or not 0 <= difference <= most):
            raise ConfigError(f"task.difference must be an integer in [0, {most}], got "
                              f"{difference!r}")
        self.difference = d = int(difference)
        batch_size = positive("train.batch_size", batch_size)
        if seed < 0:
            raise ConfigError(f"seed must be >= 0 for the feeds, got {seed}")
        n_train = corpus.n_train
        # Training windows: first target t in [d + window, n_train - horizon] (the first d
        # values have no difference).
        self.n_windows = n_train - self.horizon - self.window - d + 1
        if self.n_windows < 1:
            extra = f" plus task.difference={d}" if d else ""
            raise ConfigError(
                f"task.window={window} plus task.horizon={horizon}{extra} need more than the "
                f"{n_train} training values of '{corpus.name}'; lower task.window")
        if batch_size > self.n_windows:
            raise ConfigError(f"train.batch_size={batch_size} is larger than the "
                              f"{self.n_windows} training windows of '{corpus.name}'; lower "
                              f"train.batch_size")
        self.batch_size, self.seq_len, self.seed = batch_size, self.window, seed
        self.dtype = np.dtype(dtype)
        self.corpus = corpus
        self.n_train, self.n = n_train, len(corpus.values)
        if d == 0:
            self.mean, self.std = corpus.mean, corpus.std
            self.scaled = corpus.scale(corpus.values)  # (N, D), training statistics
        else:
            self.mean, self.std = differencing.scaling(corpus, d)
            self.scaled = (differencing.difference(corpus.values, d) - self.mean) / self.std
            self.scaled[:d] = 0.0  # no difference there; no window reads these rows
        self.steps_per_epoch = math.ceil(self.n_windows / batch_size)
        self._cached: tuple[int, np.ndarray] | None = None

    def starts(self, step: int) -> np.ndarray:
        """Series index of the first target of each window of batch ``step``."""
        return self.shuffled(step, self.n_windows) + (self.window + self.difference)

    def make(self, starts: np.ndarray) -> ForecastBatch:
        """The batch whose windows end just before the series indices ``starts``."""
        starts = np.asarray(starts, dtype=np.int64)
        past = starts[None, :] + np.arange(-self.window, 0)[:, None]  # (window, B)
        ahead = starts[:, None] + np.arange(self.horizon)[None, :]  # (B, horizon)
        mask = ahead < self.n
        targets = self.scaled[np.minimum(ahead, self.n - 1)]
        targets[~mask] = 0.0
        return ForecastBatch(self.scaled[past].astype(self.dtype, copy=False),
                             targets.astype(self.dtype, copy=False), mask, starts)

    def batch(self, step: int) -> ForecastBatch:  # type: ignore[override]
        return self.make(self.starts(step))

    def val_starts(self) -> np.ndarray:
        """Every validation index, each the first target of one window."""
        return np.arange(self.n_train, self.n, dtype=np.int64)

    def val_batches(self) -> Iterator[ForecastBatch]:  # type: ignore[override]
        starts = self.val_starts()
        for k in range(0, len(starts), self.batch_size):
            yield self.make(starts[k : k + self.batch_size])

    def history(self, end: int | None = None) -> np.ndarray:
        """The ``window`` standardised values (differences when ``difference`` > 0) before index
        ``end`` (default: the train end)."""
        end = self.n_train if end is None else int(end)
        first = self.window + self.difference
        if not first <= end <= self.n:
            raise ConfigError(f"a history of task.window={self.window} values needs an end in "
                              f"[{first}, {self.n}], got {end}")
        return self.scaled[end - self.window : end].copy()

    def unscale(self, z: np.ndarray) -> np.ndarray:
        """Standardised model outputs -> original units (differences when ``difference`` > 0)."""
        if self.difference == 0:
            return self.corpus.unscale(z)
        return np.asarray(z, dtype=np.float64) * self.std + self.mean

    def one_step_values(self, first: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Series values (B, D) at ``starts`` from the unscaled one-step outputs ``first`` (B, D)
        and the true values before each."""
        return differencing.one_step(self.corpus.values, starts, first, self.difference)

    def values_after(self, outputs: np.ndarray, end: int | None = None) -> np.ndarray:
        """Series values (S, D) continuing the true values before ``end`` (default: the train
        end) by the unscaled consecutive outputs ``outputs`` (S, D)."""
        end = self.n_train if end is None else int(end)
        return differencing.integrate(self.corpus.values[:end], outputs, self.difference)


def recursive_forecast(predict: Callable[[np.ndarray], np.ndarray], history: np.ndarray,
                       steps: int) -> np.ndarray:
    """Forecast ``steps`` values by feeding predictions back as history.

    ``predict`` maps a (W, D) history to the next values (h, D) (or (D,)); each call's output is
    appended and the window slides on.  Returns (steps, D).
    """
    hist = np.array(history, dtype=np.float64)
    if hist.ndim == 1:
        hist = hist[:, None]
    W = len(hist)
    out: list[np.ndarray] = []
    n_out = 0
    while n_out < steps:
        nxt = np.asarray(predict(hist[-W:]), dtype=np.float64).reshape(-1, hist.shape[1])
        out.append(nxt)
        n_out += len(nxt)
        hist = np.concatenate([hist, nxt])
    return np.concatenate(out)[:steps] if out else np.zeros((0, hist.shape[1]))


__all__ = ["ForecastBatch", "ForecastFeed", "recursive_forecast"]
