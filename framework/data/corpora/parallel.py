"""Parallel corpora: (source, target) text pairs, two character vocabularies, split by source.

:class:`ParallelCorpus` (``kind == "parallel"``): a source vocabulary (the training sources'
characters plus :data:`UNKNOWN`, which stands for any character the training sources never
showed) and a target vocabulary (every target character plus :data:`END`, the end-of-sequence
symbol a decoder emits last).  A pair is split as a whole, and a source text is in one split
only: :func:`split_pairs` holds out a fixed-seed fraction of the *distinct sources*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framework.data.corpora.base import TaskDataset
from framework.data.vocab import Vocab
from framework.errors import DataError

UNKNOWN = "\ufffd"  # U+FFFD REPLACEMENT CHARACTER: a source character never seen in training
END = "\n"  # ends every target (a target text itself never holds a newline)

Pair = tuple[str, str]


def encode_source(vocab: Vocab, text: str) -> tuple[np.ndarray, list[str]]:
    """Ids of ``text`` with unseen characters mapped to :data:`UNKNOWN`, and those characters
    (sorted, once each) so that a caller can warn about them."""
    stoi = vocab.stoi
    unk = stoi[UNKNOWN]
    ids = np.fromiter((stoi.get(c, unk) for c in text), dtype=np.int64, count=len(text))
    unknown = sorted({c for c in text if c not in stoi})
    return ids, unknown


@dataclass
class ParallelCorpus:
    """Pairs, split; ``train``/``val`` hold (source ids, target ids) without the end id."""

    name: str
    src_vocab: Vocab
    tgt_vocab: Vocab
    train_pairs: list[Pair]
    val_pairs: list[Pair]
    train: list[tuple[np.ndarray, np.ndarray]]
    val: list[tuple[np.ndarray, np.ndarray]]
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "parallel"

    @property
    def vocab(self) -> Vocab:
        """The source vocabulary (what a model reads)."""
        return self.src_vocab

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_val(self) -> int:
        return len(self.val)

    @property
    def max_source_length(self) -> int:
        return max(len(s) for s, _ in self.train_pairs + self.val_pairs)

    @property
    def max_target_length(self) -> int:
        """The longest target, without its end symbol."""
        return max(len(t) for _, t in self.train_pairs + self.val_pairs)


def split_pairs(pairs: Sequence[Pair], val_fraction: float,
                split_seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Hold out a fixed-seed ``val_fraction`` of the distinct sources (with all their pairs);
    pairs keep their input order in both splits."""
    unique = sorted({s for s, _ in pairs})  # sorted: independent of the input order
    n_val = int(round(len(unique) * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if n_val >= len(unique):
        raise DataError(f"{len(unique)} distinct source text(s) leave nothing to train on with "
                        f"val_fraction={val_fraction}; lower dataset.val_fraction")
    held = {unique[i] for i in np.random.default_rng(split_seed).permutation(len(unique))[:n_val]}
    return [p for p in pairs if p[0] not in held], [p for p in pairs if p[0] in held]


def parallel_corpus(name: str, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair], *,
                    source: str = "", metadata: dict[str, Any] | None = None) -> ParallelCorpus:
    """A corpus of already split pairs: the vocabularies, the ids, and checks that no text is
    empty, no target holds :data:`END` and no source is in both splits."""
    train_pairs, val_pairs = list(train_pairs), list(val_pairs)
    where = source or name
    if not train_pairs:
        raise DataError(f"{where} has no training pairs; add source<TAB>target pairs")
    for split, pairs in (("training", train_pairs), ("validation", val_pairs)):
        for k, (src, tgt) in enumerate(pairs):
            if not src or not tgt:
                raise DataError(f"{where}: {split} pair {k + 1} has an empty source or target")
            if END in tgt or END in src:
                raise DataError(f"{where}: {split} pair {k + 1} holds a newline")
    both = {s for s, _ in train_pairs} & {s for s, _ in val_pairs}
    if both:
        raise DataError(f"{where}: {len(both)} source text(s) are in both splits, e.g. "
                        f"{sorted(both)[0]!r}")
    src_vocab = Vocab.from_text("".join(s for s, _ in train_pairs) + UNKNOWN)
    tgt_vocab = Vocab.from_text("".join(t for _, t in train_pairs + val_pairs), eos=END)

    def encode(pairs: list[Pair]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(encode_source(src_vocab, s)[0], tgt_vocab.encode(t)) for s, t in pairs]

    meta = {"n_train": len(train_pairs), "n_val": len(val_pairs), **(metadata or {})}
    return ParallelCorpus(name=name, src_vocab=src_vocab, tgt_vocab=tgt_vocab,
                          train_pairs=train_pairs, val_pairs=val_pairs, train=encode(train_pairs),
                          val=encode(val_pairs), source=source, metadata=meta)


class ParallelDataset(TaskDataset):
    """Base of the dataset plugins that load a :class:`ParallelCorpus`."""

    kind = "parallel"

    def load(self) -> ParallelCorpus:
        raise NotImplementedError


__all__ = ["END", "UNKNOWN", "Pair", "ParallelCorpus", "ParallelDataset", "encode_source",
           "parallel_corpus", "split_pairs"]
