"""Labelled corpora: texts with class labels, split by distinct text, for classification.

:class:`LabelledCorpus` (``kind == "labelled"``): texts with integer labels into ``classes``,
a character vocabulary without an end-of-example symbol, and a train/val split.  (text, label)
pairs are de-duplicated, then a fixed-seed fraction of the *distinct texts* is held out, so a
text that occurs under several labels is wholly in one split.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framework.data.corpora.base import TaskDataset
from framework.data.vocab import Vocab
from framework.errors import ConfigError, DataError

# Letters that NFKD does not decompose into an ASCII letter plus combining marks.
_ASCII_LETTERS = {"ß": "ss", "ẞ": "SS", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d",
                  "Đ": "D", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i", "þ": "th",
                  "Þ": "Th", "ð": "d", "Ð": "D"}




def fold_ascii(text: str) -> str:
    """ASCII version of ``text``: NFKD, combining marks dropped, ß -> ss, ł -> l, ...

    Characters with no ASCII spelling after that are dropped.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    out = "".join(_ASCII_LETTERS.get(c, c) for c in decomposed if not unicodedata.combining(c))
    return out.encode("ascii", "ignore").decode("ascii")


def prepare_text(text: str, *, ascii: bool = False, lower: bool = False) -> str:
    """The normalisation a labelled dataset applies to each text (apply it at prediction too)."""
    text = text.strip()
    if ascii:
        text = fold_ascii(text)
    return text.lower() if lower else text


class ClassLabels:
    """What every labelled corpus (texts, sequences) answers about its classes; it needs
    ``classes``, ``train``, ``val`` and ``train_labels``/``val_labels`` (int64 class indices)."""

    classes: tuple[str, ...]
    train: Any
    val: Any
    train_labels: np.ndarray
    val_labels: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_val(self) -> int:
        return len(self.val)

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Examples per class in ``split`` ("train" or "val"), in class order."""
        labels = getattr(self, f"{split}_labels")
        counts = np.bincount(labels, minlength=self.n_classes)
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def class_weights(self, mode: str = "balanced") -> np.ndarray:
        """Per-class loss weights: ``"balanced"`` is N / (C * count_c); ``"none"`` all ones."""
        if mode == "none":
            return np.ones(self.n_classes)
        if mode != "balanced":
            raise ConfigError(f"class weights must be 'balanced' or 'none', got {mode!r}")
        counts = np.bincount(self.train_labels, minlength=self.n_classes).astype(np.float64)
        # A class without training examples gets weight 0: it never occurs in the loss anyway.
        with np.errstate(divide="ignore"):
            w = len(self.train_labels) / (self.n_classes * counts)
        return np.where(counts > 0, w, 0.0)


@dataclass
class LabelledCorpus(ClassLabels):
    """Labelled texts, split.  ``train``/``val`` are int64 id arrays (no end symbol)."""

    name: str
    vocab: Vocab
    classes: tuple[str, ...]
    train_texts: list[str]
    train_labels: np.ndarray  # (N_train,) int64 indices into classes
    val_texts: list[str]
    val_labels: np.ndarray
    train: list[np.ndarray]
    val: list[np.ndarray]
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "labelled"


def _held_out_texts(unique: Sequence[str], val_fraction: float, split_seed: int) -> set[str]:
    n = len(unique)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    picked = np.random.default_rng(split_seed).permutation(n)[:n_val]
    return {unique[i] for i in picked.tolist()}


def check_label(label: str, where: str = "") -> str:
    """``label`` if it can be printed and served on one line, else a one-line DataError: class
    labels are shown one per line (predict, the per-class table, the confusion matrix), so a
    control character (a line break, a carriage return, a tab, ...) in one is refused."""
    bad = next((c for c in label if unicodedata.category(c).startswith("C")), None)
    if bad is not None or not label.strip():
        named = {"\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\t": "TAB"}
        what = (f"a control character ({named.get(bad) or unicodedata.name(bad, repr(bad))})"
                if bad is not None
                else "nothing but white space")
        raise DataError(f"{where + ': ' if where else ''}class label {label!r} contains {what}; "
                        f"labels are printed one per line: rename the label")
    return label


def labelled_corpus(name: str, texts: Sequence[str], labels: Sequence[str], *,
                    val_fraction: float, split_seed: int = 0,
                    classes: Sequence[str] | None = None, source: str = "",
                    metadata: dict[str, Any] | None = None) -> LabelledCorpus:
    """De-duplicate (text, label) pairs, hold out ``val_fraction`` of the distinct texts.

    Pairs keep their input order in both splits.  ``classes`` defaults to the sorted labels.
    Empty texts are dropped (and counted in ``metadata["n_empty"]``).
    """
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels")
    classes = tuple(sorted(set(labels))) if classes is None else tuple(classes)
    for label in classes:
        check_label(label, source or name)
    index = {c: i for i, c in enumerate(classes)}
    seen: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str]] = []
    n_empty = 0
    for text, label in zip(texts, labels, strict=True):
        if not text:
            n_empty += 1
            continue
        if label not in index:
            raise DataError(f"label {label!r} is not one of the classes {', '.join(classes)}")
        if (text, label) not in seen:
            seen.add((text, label))
            pairs.append((text, label))
    where = source or name
    if not pairs:
        raise DataError(f"{where} has no non-empty texts; add labelled examples")
    used = {label for _, label in pairs}
    if len(used) < 2:
        raise DataError(f"{where} has examples of {len(used)} class only; a classifier needs "
                        f"at least 2 labels")
    unique = sorted({text for text, _ in pairs})  # sorted: independent of the input order
    held = _held_out_texts(unique, val_fraction, split_seed)
    if len(held) >= len(unique):
        raise DataError(f"{where} has {len(unique)} distinct text(s), which leave nothing to "
                        f"train on with val_fraction={val_fraction}; lower dataset.val_fraction")
    train = [(t, index[c]) for t, c in pairs if t not in held]
    val = [(t, index[c]) for t, c in pairs if t in held]
    vocab = Vocab.from_text("".join(unique))
    meta = {"n_pairs": len(pairs), "n_duplicates": len(texts) - n_empty - len(pairs),
            "n_empty": n_empty, "n_unique_texts": len(unique),
            "n_multi_label_texts": int(sum(n > 1 for n in Counter(t for t, _ in pairs).values())),
            "val_fraction": val_fraction, "split_seed": split_seed, **(metadata or {})}
    return LabelledCorpus(
        name=name, vocab=vocab, classes=classes,
        train_texts=[t for t, _ in train], train_labels=np.array([c for _, c in train],
                                                                 dtype=np.int64),
        val_texts=[t for t, _ in val], val_labels=np.array([c for _, c in val], dtype=np.int64),
        train=[vocab.encode(t) for t, _ in train], val=[vocab.encode(t) for t, _ in val],
        source=source, metadata=meta,
    )



class LabelledTextDataset(TaskDataset):
    """Labelled texts; subclasses implement :meth:`read`.  Schema fields used here:
    ``val_fraction``, ``split_seed``, ``ascii``, ``lower``."""

    kind = "labelled"

    def read(self) -> tuple[list[str], list[str], list[str] | None, str]:
        """``(texts, labels, classes or None for the sorted labels, source description)``."""
        raise NotImplementedError

    def load(self) -> LabelledCorpus:
        c = self.config
        texts, labels, classes, source = self.read()
        texts = [prepare_text(t, ascii=c.ascii, lower=c.lower) for t in texts]
        return labelled_corpus(self.name, texts, labels, classes=classes,
                               val_fraction=c.val_fraction, split_seed=c.split_seed,
                               source=source, metadata={"ascii": c.ascii, "lower": c.lower})


