"""The ``sequences`` feed: padded mini-batches of labelled multivariate sequences.

The batching of the ``labelled`` feed (same epoch order ``default_rng([seed, e]).permutation``,
a pure function of the step, every batch from a zero state), on a ``sequences`` corpus: inputs
are (T, B, D) floats standardised with the corpus' training statistics, right-padded with
zeros after each sequence's end (T is the longest of the batch), with ``lengths`` (B,) and
``labels`` (B,) as :class:`~framework.data.feeds.labelled.ClassifyBatch`.  A many-to-one model
reads the state at ``lengths - 1``, so the padding never reaches a prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from framework.data.corpora.sequences import SequenceCorpus
from framework.data.feeds.base import check_corpus
from framework.data.feeds.labelled import ClassifyFeed
from framework.registry import FEEDS


def pad_sequences(seqs: Sequence[np.ndarray], dtype: Any = np.float64) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """``(inputs (T, B, D) zero-padded after each end, lengths (B,))`` of (T_i, D) arrays."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    inputs = np.zeros((int(lengths.max()), len(seqs), seqs[0].shape[1]), dtype=dtype)
    for b, x in enumerate(seqs):
        inputs[: len(x), b] = x
    return inputs, lengths


@FEEDS.register("sequences")
class SequencesFeed(ClassifyFeed):
    """Mini-batches of standardised sequences; the last batch of an epoch may be smaller."""

    @classmethod
    def from_config(cls, cfg: Any, *, corpus: SequenceCorpus, batch_size: int, seed: int,
                    dtype: str | np.dtype = "float64", **_: Any) -> SequencesFeed:
        check_corpus(cls.name, corpus, ("sequences",),
                     "choose a dataset of labelled multivariate sequences")
        return cls(corpus, batch_size=batch_size, seed=seed, dtype=dtype)

    def __init__(self, corpus: SequenceCorpus, *, batch_size: int, seed: int,
                 dtype: str | np.dtype = "float64") -> None:
        super().__init__(corpus, batch_size=batch_size, seed=seed)  # type: ignore[arg-type]
        self.dtype = np.dtype(dtype)
        self.dim = corpus.dim
        # Standardised once, in the model's dtype: batches only copy rows.
        self._train = [corpus.scale(x).astype(self.dtype) for x in corpus.train]
        self._val = [corpus.scale(x).astype(self.dtype) for x in corpus.val]

    def pad(self, seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return pad_sequences(seqs, self.dtype)


__all__ = ["SequencesFeed", "pad_sequences"]
