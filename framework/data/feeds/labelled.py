"""The ``labelled`` feed: padded mini-batches of labelled texts, for many-to-one classification.

As every feed, ``feed.batch(step)`` is a pure function of the step and the seed: epoch ``e``
visits the training examples in the order ``default_rng([seed, e]).permutation``, so a resumed
run needs no saved feed state.  Every batch starts from a zero state (``reset``).

``inputs`` (T, B) int64 token ids, right-padded with -1 (the cells' zero input), ``lengths``
(B,) and ``labels`` (B,).  T is the longest text of the batch; the many-to-one head reads the
state at ``lengths - 1`` of each column, so the padding after a text's end never reaches its
prediction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.data.corpora.labelled import LabelledCorpus
from framework.data.feeds.base import Feed, check_corpus, positive
from framework.errors import ConfigError
from framework.registry import FEEDS


@dataclass(frozen=True, eq=False)
class ClassifyBatch:
    inputs: np.ndarray  # (T, B) int64 ids, -1 after each text's end; or (T, B, D) floats
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


@FEEDS.register("labelled")
class ClassifyFeed(Feed):
    """Mini-batches of labelled texts; the last batch of an epoch may be smaller."""

    @classmethod
    def from_config(cls, cfg: Any, *, corpus: LabelledCorpus, batch_size: int, seed: int,
                    **_: Any) -> ClassifyFeed:
        check_corpus(cls.name, corpus, ("labelled",), "choose a dataset of labelled texts")
        return cls(corpus, batch_size=batch_size, seed=seed)

    def __init__(self, corpus: LabelledCorpus, *, batch_size: int, seed: int) -> None:
        batch_size = positive("train.batch_size", batch_size)
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

    def indices(self, step: int) -> np.ndarray:
        """Indices into the training texts of batch ``step``."""
        return self.shuffled(step, len(self._train))

    def pad(self, seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, lengths)`` of a batch's examples (texts: :func:`pad_texts`)."""
        return pad_texts(seqs)

    def batch(self, step: int) -> ClassifyBatch:  # type: ignore[override]
        idx = self.indices(step)
        inputs, lengths = self.pad([self._train[j] for j in idx])
        return ClassifyBatch(inputs, lengths, self._train_labels[idx].copy())

    def val_batches(self) -> Iterator[ClassifyBatch]:  # type: ignore[override]
        """The validation examples once, in corpus order."""
        for start in range(0, len(self._val), self.batch_size):
            stop = start + self.batch_size
            inputs, lengths = self.pad(self._val[start:stop])
            yield ClassifyBatch(inputs, lengths, self._val_labels[start:stop].copy())


__all__ = ["ClassifyBatch", "ClassifyFeed", "pad_texts", "reverse_padded"]
