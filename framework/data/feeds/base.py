"""The feed contract: a batch, the feed base class, and the step arithmetic every feed shares.

Every feed is a *pure function of the step*: ``feed.batch(step)`` depends only on ``step`` and the
feed's seeds, never on earlier calls, so resuming a run at step k needs no saved feed state and
batches can be requested in any order.  Per-epoch shuffles are re-derived from
``np.random.default_rng([seed, epoch])``.

A feed plugin is built by ``FEEDS.build(cfg, corpus=..., batch_size=..., seq_len=..., seed=...)``:
the registry calls its ``from_config`` with the validated schema instance (whose fields are
``train.*`` options) and the run's corpus and batch shape; ``from_config`` turns impossible
combinations into one-line ConfigErrors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.data.corpora.text import Corpus
from framework.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Batch:
    inputs: np.ndarray  # (T, B) int64, -1 = zero input
    targets: np.ndarray  # (T, B) int64, -1 = ignored
    reset: bool  # start this batch from a zero state

    @property
    def n_tokens(self) -> int:
        """Number of targets that count towards the loss."""
        return int(np.count_nonzero(self.targets >= 0))


def check_step(step: int) -> int:
    """``step`` as an int, refused when negative (batches exist for steps 0, 1, ...)."""
    step = int(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` training examples: a pure function of
    ``(seed, epoch)``, so a resumed run needs no saved feed state."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class Feed:
    """Base class; the registry sets ``name``, subclasses ``batch_size``, ``seq_len`` and
    ``steps_per_epoch``.

    ``batch_size`` is the width of every training batch's state (the last one of an epoch may be
    narrower).
    """

    name: str = ""  # set by FEEDS.register
    batch_size: int
    seq_len: int | None
    steps_per_epoch: int

    @classmethod
    def from_config(cls, cfg: Any, *, corpus: Corpus, batch_size: int, seq_len: int,
                    seed: int) -> Feed:
        raise NotImplementedError

    def batch(self, step: int) -> Batch:
        raise NotImplementedError

    def val_batches(self) -> Iterator[Batch]:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        """The feed's registered name (``names``, ``stream``, ``labelled``, ...)."""
        return self.name

    def shuffled(self, step: int, n: int) -> np.ndarray:
        """Which of ``n`` training examples batch ``step`` holds: its slice of the epoch's
        permutation (the last permutation is cached: a speed-up, the result is the same)."""
        epoch, i = divmod(check_step(step), self.steps_per_epoch)
        cached = getattr(self, "_cached", None)
        if cached is None or cached[0] != epoch:
            cached = self._cached = (epoch, epoch_permutation(n, self.seed, epoch))
        return cached[1][i * self.batch_size : (i + 1) * self.batch_size]

    def epoch(self, step: int) -> int:
        return check_step(step) // self.steps_per_epoch


def check_corpus(feed: str, corpus: Any, kinds: tuple[str, ...], fix: str) -> None:
    """Refuse, in one line, a corpus whose kind this feed cannot batch."""
    if corpus.kind not in kinds:
        raise ConfigError(f"feed '{feed}' needs a dataset of kind {' or '.join(kinds)}, but "
                          f"'{corpus.name}' is {corpus.kind}; {fix}")


def positive(name: str, value: int) -> int:
    """``value`` as an int, or a one-line ConfigError naming the key ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


__all__ = ["Batch", "Feed", "check_corpus", "check_step", "epoch_permutation", "positive"]
