"""Task feeds: batches of labelled texts (classification) and of series windows (forecasting).

As in :mod:`framework.data.feeds`, ``feed.batch(step)`` is a pure function of the step and the seed:
epoch ``e`` visits the training examples in the order ``default_rng([seed, e]).permutation``, so
a resumed run needs no saved feed state.  Every batch starts from a zero state (``reset``).

- :class:`ClassifyFeed`: ``inputs`` (T, B) int64 token ids, right-padded with -1 (the cells'
  zero input), ``lengths`` (B,) and ``labels`` (B,).  T is the longest text of the batch; the
  many-to-one head reads the state at ``lengths - 1`` of each column, so the padding after a
  text's end never reaches its prediction.
- :class:`ForecastFeed`: ``inputs`` (window, B, D) float standardised values and ``targets``
  (B, horizon, D): the ``horizon`` values right after each window.  Training windows have all
  their targets in the training part.  Validation windows end just before each validation value,
  so every validation value is the first (one-step) target of exactly one window, with its true
  history (which may lie in the training part); targets past the series end are 0 and
  ``mask`` False.  With ``difference=d`` > 0 the values are the series' ``d``-th differences
  (:mod:`framework.data.differencing`), standardised with the training differences' statistics;
  indices stay those of the series, and the first window starts where differences exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from framework.data import differencing
from framework.data.feeds import Feed, check_step, epoch_permutation
from framework.data.taskdata import LabelledCorpus, SeriesCorpus
from framework.errors import ConfigError

# ------------------------------------------------------------------------------ classification


@dataclass(frozen=True, eq=False)
class ClassifyBatch:
    inputs: np.ndarray  # (T, B) int64 ids, -1 after each text's end
    lengths: np.ndarray  # (B,) int64, >= 1
    labels: np.ndarray  # (B,) int64
    reset: bool = True

    @property
    def size(self) -> int:
        return len(self.labels)


def pad_texts(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs (T, B) right-padded with -1, lengths (B,))`` for id arrays of length >= 1."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    inputs = np.full((int(lengths.max()), len(seqs)), -1, dtype=np.int64)
    for b, ids in enumerate(seqs):
        inputs[: len(ids), b] = ids
    return inputs, lengths


def reverse_padded(inputs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each column's first ``lengths[b]`` steps reversed, padding left at the end: the input of
    a backward stack, whose state at ``lengths - 1`` has then read the whole text."""
    T = inputs.shape[0]
    t = np.arange(T)[:, None]
    src = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (T, B)
    # Dense inputs (T, B, D): the same time index for every feature.
    return np.take_along_axis(inputs, src.reshape(src.shape + (1,) * (inputs.ndim - 2)), axis=0)


class ClassifyFeed(Feed):
    """Mini-batches of labelled texts; the last batch of an epoch may be smaller."""

    kind = "classify"

    def __init__(self, corpus: LabelledCorpus, *, batch_size: int, seed: int) -> None:
        batch_size = _positive("train.batch_size", batch_size)
        if seed < 0:
            raise ConfigError(f"seed must be >= 0 for the feeds, got {seed}")
        n = corpus.n_train
        if batch_size > n:
            raise ConfigError(f"train.batch_size={batch_size} is larger than the {n} training "
                              f"texts of '{corpus.name}'; lower train.batch_size")
        self.batch_size, self.seq_len, self.seed = batch_size, None, seed
        self._train, self._train_labels = list(corpus.train), corpus.train_labels
        self._val, self._val_labels = list(corpus.val), corpus.val_labels
        self.steps_per_epoch = math.ceil(n / batch_size)
        self._cached: tuple[int, np.ndarray] | None = None

    def _perm(self, epoch: int) -> np.ndarray:
        # Caching the last epoch's permutation is only a speed-up; the result is the same.
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, epoch_permutation(len(self._train), self.seed, epoch))
        return self._cached[1]

    def indices(self, step: int) -> np.ndarray:
        """Indices into the training texts of batch ``step``."""
        epoch, i = divmod(check_step(step), self.steps_per_epoch)
        return self._perm(epoch)[i * self.batch_size : (i + 1) * self.batch_size]

    def batch(self, step: int) -> ClassifyBatch:  # type: ignore[override]
        idx = self.indices(step)
        inputs, lengths = pad_texts([self._train[j] for j in idx])
        return ClassifyBatch(inputs, lengths, self._train_labels[idx].copy())

    def val_batches(self) -> Iterator[ClassifyBatch]:  # type: ignore[override]
        """The validation texts once, in corpus order."""
        for start in range(0, len(self._val), self.batch_size):
            stop = start + self.batch_size
            inputs, lengths = pad_texts(self._val[start:stop])
            yield ClassifyBatch(inputs, lengths, self._val_labels[start:stop].copy())


# ------------------------------------------------------------------------------ forecasting


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


class ForecastFeed(Feed):
    """Windows of ``window`` past values predicting the next ``horizon`` values."""

    kind = "forecast"

    def __init__(self, corpus: SeriesCorpus, *, window: int, horizon: int = 1, batch_size: int,
                 seed: int, dtype: str | np.dtype = "float64", difference: int = 0) -> None:
        self.window = _positive("task.window", window)
        self.horizon = _positive("task.horizon", horizon)
        most = differencing.MAX_DIFFERENCE
        if (isinstance(difference, bool) or not isinstance(difference, int | np.integer)
                or not 0 <= difference <= most):
            raise ConfigError(f"task.difference must be an integer in [0, {most}], got "
                              f"{difference!r}")
        self.difference = d = int(difference)
        batch_size = _positive("train.batch_size", batch_size)
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

    def _perm(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, epoch_permutation(self.n_windows, self.seed, epoch))
        return self._cached[1]

    def starts(self, step: int) -> np.ndarray:
        """Series index of the first target of each window of batch ``step``."""
        epoch, i = divmod(check_step(step), self.steps_per_epoch)
        first = self.window + self.difference
        return self._perm(epoch)[i * self.batch_size : (i + 1) * self.batch_size] + first

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


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


__all__ = ["ClassifyBatch", "ClassifyFeed", "ForecastBatch", "ForecastFeed", "pad_texts",
           "recursive_forecast", "reverse_padded"]
