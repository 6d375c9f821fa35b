"""Differencing of a series and its inverse: what a forecaster models when ``task.difference`` > 0.

With order ``d`` the model reads and predicts the ``d``-th difference of the series (order 1: the
change from one step to the next), standardised with the mean and standard deviation of the
training part's differences (those whose every term lies in the training part).  Its
predictions go back to the series' units by a cumulative sum anchored on the true last values
(:func:`integrate`), so errors compare with baselines fitted on the undifferenced series.
Order 0 is the identity and leaves the series and its statistics exactly as they are.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from framework.errors import ConfigError

MAX_DIFFERENCE = 2  # beyond the second difference a series of levels is noise


def difference(values: np.ndarray, order: int) -> np.ndarray:
    """``(N, D)`` aligned with ``values``: row ``t`` holds the ``order``-th difference ending at
    ``t``; the first ``order`` rows, which have none, are NaN.  Order 0 returns ``values``."""
    v = np.asarray(values, dtype=np.float64)
    if order == 0:
        return v
    out = np.full(v.shape, np.nan)
    out[order:] = np.diff(v, n=order, axis=0)
    return out


def scaling(corpus: Any, order: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` (D,) of the training part's ``order``-th differences (order 0: the
    corpus' own training statistics)."""
    if order == 0:
        return corpus.mean, corpus.std
    train = difference(corpus.train, order)[order:]
    if len(train) < 2:
        raise ConfigError(f"task.difference={order} leaves {len(train)} training differences of "
                          f"'{corpus.name}'; lower task.difference")
    mean, std = train.mean(axis=0), train.std(axis=0)
    if not np.all(std > 0):
        raise ConfigError(f"the training part's differences of order {order} are constant in "
                          f"'{corpus.name}'; lower task.difference")
    return mean, std


def integrate(history: np.ndarray, diffs: np.ndarray, order: int) -> np.ndarray:
    """The values (S, D) whose ``order``-th differences continue ``history`` (H >= order rows of
    true values, oldest first) by ``diffs`` (S, D): cumulative sums anchored on the last value of
    every difference level.  Order 0 returns ``diffs``."""
    d = np.asarray(diffs, dtype=np.float64)
    if order == 0:
        return d
    h = np.asarray(history, dtype=np.float64).reshape(len(history), -1)
    if len(h) < order:
        raise ValueError(f"undoing a difference of order {order} needs {order} past values, "
                         f"got {len(h)}")
    levels = [h[-order:]]
    for _ in range(order - 1):
        levels.append(np.diff(levels[-1], axis=0))
    out = d.reshape(len(d), -1)
    for level in reversed(levels):
        out = level[-1] + np.cumsum(out, axis=0)
    return out


def one_step(values: np.ndarray, starts: np.ndarray, diffs: np.ndarray, order: int) -> np.ndarray:
    """The values at ``starts`` (B,) implied by a predicted ``order``-th difference (B, D) at each
    and the true values before it: ``x_t = diff_t - sum_k (-1)^k C(order, k) x_(t-k)``.
    Order 0 returns ``diffs``."""
    d = np.asarray(diffs, dtype=np.float64)
    if order == 0:
        return d
    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    starts = np.asarray(starts, dtype=np.int64)
    base = np.zeros_like(d)
    for k in range(1, order + 1):
        base = base + (-1) ** (k + 1) * math.comb(order, k) * v[starts - k]
    return base + d


__all__ = ["MAX_DIFFERENCE", "difference", "integrate", "one_step", "scaling"]
