"""The ``parallel`` feed: padded mini-batches of (source, target) pairs for sequence to sequence.

``inputs`` (S, B) int64 source ids right-padded with -1 and ``lengths`` (B,); ``targets_in``
(T, B): the start token -1, then the target ids (what the decoder reads with teacher forcing);
``targets`` (T, B): the target ids, then the end id (what each step must predict).  T is the
longest target of the batch plus one; both target arrays are padded with -1, which the loss
ignores.  As every feed, ``feed.batch(step)`` is a pure function of the step and the seed (epoch
``e`` visits the pairs in the order ``default_rng([seed, e]).permutation``); every batch starts
from a zero state (``reset``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.data.corpora.parallel import ParallelCorpus
from framework.data.feeds.base import Feed, check_corpus, positive
from framework.data.feeds.labelled import pad_texts
from framework.errors import ConfigError
from framework.registry import FEEDS


@dataclass(frozen=True, eq=False)
class Seq2SeqBatch:
    inputs: np.ndarray  # (S, B) int64 source ids, -1 after each source's end
    lengths: np.ndarray  # (B,) int64 source lengths, >= 1
    targets_in: np.ndarray  # (T, B) int64: -1 (start), target ids, -1 padding
    targets: np.ndarray  # (T, B) int64: target ids, end id, -1 padding
    reset: bool = True

    @property
    def size(self) -> int:
        return len(self.lengths)

    @property
    def n_tokens(self) -> int:
        """Number of targets that count towards the loss."""
        return int(np.count_nonzero(self.targets >= 0))

    @property
    def mask(self) -> np.ndarray:
        """(S, B) bool: the valid source positions."""
        return np.arange(self.inputs.shape[0])[:, None] < self.lengths[None, :]


def pad_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray]], end_id: int) -> Seq2SeqBatch:
    """A batch of (source ids, target ids) pairs (neither empty)."""
    inputs, lengths = pad_texts([s for s, _ in pairs])
    T = max(len(t) for _, t in pairs) + 1
    targets_in = np.full((T, len(pairs)), -1, dtype=np.int64)
    targets = np.full((T, len(pairs)), -1, dtype=np.int64)
    for b, (_, tgt) in enumerate(pairs):
        n = len(tgt)
        targets_in[1 : n + 1, b] = tgt
        targets[:n, b] = tgt
        targets[n, b] = end_id
    return Seq2SeqBatch(inputs, lengths, targets_in, targets)


@FEEDS.register("parallel")
class ParallelFeed(Feed):
    """Mini-batches of pairs; the last batch of an epoch may be smaller."""

    @classmethod
    def from_config(cls, cfg: Any, *, corpus: ParallelCorpus, batch_size: int, seed: int,
                    **_: Any) -> ParallelFeed:
        check_corpus(cls.name, corpus, ("parallel",),
                     "choose a dataset of source/target pairs (dates, parallel_textfile)")
        return cls(corpus, batch_size=batch_size, seed=seed)

    def __init__(self, corpus: ParallelCorpus, *, batch_size: int, seed: int) -> None:
        batch_size = positive("train.batch_size", batch_size)
        if seed < 0:
            raise ConfigError(f"seed must be >= 0 for the feeds, got {seed}")
        n = corpus.n_train
        if batch_size > n:
            raise ConfigError(f"train.batch_size={batch_size} is larger than the {n} training "
                              f"pairs of '{corpus.name}'; lower train.batch_size")
        self.batch_size, self.seq_len, self.seed = batch_size, None, seed
        self._train, self._val = list(corpus.train), list(corpus.val)
        self.end_id = int(corpus.tgt_vocab.eos_id)
        self.steps_per_epoch = math.ceil(n / batch_size)
        self._cached: tuple[int, np.ndarray] | None = None

    def indices(self, step: int) -> np.ndarray:
        """Indices into the training pairs of batch ``step``."""
        return self.shuffled(step, len(self._train))

    def batch(self, step: int) -> Seq2SeqBatch:  # type: ignore[override]
        return pad_pairs([self._train[j] for j in self.indices(step)], self.end_id)

    @property
    def val_pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The validation pairs (source ids, target ids without the end id), in corpus order."""
        return self._val

    def val_batches(self) -> Iterator[Seq2SeqBatch]:  # type: ignore[override]
        """The validation pairs once, in corpus order."""
        for start in range(0, len(self._val), self.batch_size):
            yield pad_pairs(self._val[start : start + self.batch_size], self.end_id)


__all__ = ["ParallelFeed", "Seq2SeqBatch", "pad_pairs"]
