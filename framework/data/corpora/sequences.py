"""Labelled multivariate sequences: (timesteps, features) float arrays with class labels.

:class:`SequenceCorpus` (``kind == "sequences"``): every example is a float64 array of shape
(timesteps, D) in the file's units, examples differ in length, and each has a class label.
The per-feature mean and standard deviation of all training frames (``mean``/``std``, also in
``metadata["feature_mean"]``/``["feature_std"]`` as lists, for a checkpoint) standardise every
split: statistics of the training split only, never of the validation examples.

Two ways to split: a dataset's own train and test files (:func:`sequence_corpus`, e.g.
``japanese_vowels``' official 270/370), or a fixed-seed fraction of one file's examples held
out (:func:`split_sequences`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framework.data.corpora.labelled import ClassLabels
from framework.data.corpora.series import MAX_MAGNITUDE, too_large
from framework.data.corpora.text import held_out
from framework.errors import DataError

MAX_FEATURES = 1 << 12  # features per time step a corpus may have


@dataclass
class SequenceCorpus(ClassLabels):
    """Labelled (timesteps, D) float64 sequences, split; ``mean``/``std`` (D,) of training."""

    name: str
    classes: tuple[str, ...]
    train: list[np.ndarray]  # (T_i, D) float64, original units
    train_labels: np.ndarray  # (N_train,) int64 indices into classes
    val: list[np.ndarray]
    val_labels: np.ndarray
    mean: np.ndarray  # (D,) of every training frame
    std: np.ndarray  # (D,) > 0
    features: tuple[str, ...] = ()
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "sequences"

    @property
    def dim(self) -> int:
        return len(self.mean)

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Original units -> standardised with the training statistics (any leading shape)."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def check(self, x: Any, where: str = "the sequence") -> np.ndarray:
        """``x`` as a (timesteps, D) float64 array of this corpus' features, or a one-line
        DataError (what prediction calls on a user's sequence before the model sees it)."""
        return check_sequence(x, where, self.dim)


def check_sequence(x: Any, where: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a finite (timesteps >= 1, D) float64 array (D = ``dim`` when given)."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where} is not an array of numbers; give timesteps x features "
                        f"values") from None
    if arr.ndim == 1 and dim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{where} has shape {arr.shape}; a sequence is (timesteps, features) "
                        f"with at least one step")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"{where} has {arr.shape[1]} features per step, the model reads {dim}; "
                        f"give {dim} values per time step")
    if arr.shape[1] > MAX_FEATURES:
        raise DataError(f"{where} has {arr.shape[1]} features per step, at most {MAX_FEATURES}")
    if not np.isfinite(arr).all():
        raise DataError(f"{where} contains NaN or infinite values; fill or drop them first")
    largest = too_large(arr)
    if largest is not None:  # standardising it would overflow (NumPy warnings, then "NaN")
        raise DataError(f"{where} has a value as large as {largest:.3g}, beyond the "
                        f"{MAX_MAGNITUDE:.0e} a sequence model can standardise in float64; "
                        f"rescale the features (divide them by a power of ten)")
    return arr


def _labels(labels: Sequence[str], index: dict[str, int], where: str) -> np.ndarray:
    unknown = sorted({str(y) for y in labels if str(y) not in index})
    if unknown:
        raise DataError(f"{where}: label(s) {', '.join(map(repr, unknown[:5]))} are not among the "
                        f"classes {', '.join(index)}")
    return np.array([index[str(y)] for y in labels], dtype=np.int64)


def sequence_corpus(name: str, train: Sequence[Any], train_labels: Sequence[str],
                    val: Sequence[Any], val_labels: Sequence[str], *,
                    classes: Sequence[str] | None = None, features: Sequence[str] = (),
                    source: str = "", metadata: dict[str, Any] | None = None) -> SequenceCorpus:
    """A corpus from given splits; ``classes`` defaults to the sorted training labels."""
    where = source or name
    if len(train) != len(train_labels) or len(val) != len(val_labels):
        raise DataError(f"{where}: the number of sequences and of labels differ")
    if not len(train):
        raise DataError(f"{where} has no training sequences")
    train_x = [check_sequence(x, f"{where} training sequence {i + 1}") for i, x in
               enumerate(train)]
    dim = train_x[0].shape[1]
    train_x = [check_sequence(x, f"{where} training sequence {i + 1}", dim) for i, x in
               enumerate(train_x)]
    val_x = [check_sequence(x, f"{where} validation sequence {i + 1}", dim) for i, x in
             enumerate(val)]
    classes = tuple(sorted({str(y) for y in train_labels})) if classes is None else tuple(
        str(c) for c in classes)
    index = {c: i for i, c in enumerate(classes)}
    y_train, y_val = _labels(train_labels, index, where), _labels(val_labels, index, where)
    if len(set(y_train.tolist())) < 2:
        raise DataError(f"{where} has training sequences of fewer than 2 classes; a classifier "
                        f"needs at least 2 labels")
    frames = np.concatenate(train_x)
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    if not np.all(std > 0):
        const = [str(d + 1) for d in np.flatnonzero(~(std > 0))[:5]]
        raise DataError(f"{where}: feature(s) {', '.join(const)} are constant over the training "
                        f"frames and cannot be standardised; drop them")
    if features and len(features) != dim:
        raise DataError(f"{where} names {len(features)} features but its sequences have {dim}")
    lengths = [len(x) for x in train_x + val_x]
    meta = {"n_train": len(train_x), "n_val": len(val_x), "n_features": dim,
            "min_length": min(lengths), "max_length": max(lengths),
            "feature_mean": mean.tolist(), "feature_std": std.tolist(), **(metadata or {})}
    return SequenceCorpus(name=name, classes=classes, train=train_x, train_labels=y_train,
                          val=val_x, val_labels=y_val, mean=mean, std=std,
                          features=tuple(features), source=source, metadata=meta)


def split_sequences(name: str, examples: Sequence[Any], labels: Sequence[str], *,
                    val_fraction: float, split_seed: int = 0,
                    classes: Sequence[str] | None = None, features: Sequence[str] = (),
                    source: str = "", metadata: dict[str, Any] | None = None) -> SequenceCorpus:
    """Hold out a fixed-seed ``val_fraction`` of the examples (the text corpora's rule), then
    :func:`sequence_corpus`; both splits keep the input order."""
    if len(examples) != len(labels):
        raise DataError(f"{source or name}: {len(examples)} sequences but {len(labels)} labels")
    val_idx = set(held_out(len(examples), val_fraction, split_seed).tolist())
    if len(val_idx) >= len(examples):
        raise DataError(f"{source or name} has {len(examples)} sequence(s), which leave nothing "
                        f"to train on with val_fraction={val_fraction}; lower "
                        f"dataset.val_fraction")
    pick = [i not in val_idx for i in range(len(examples))]
    return sequence_corpus(
        name, [x for x, t in zip(examples, pick, strict=True) if t],
        [y for y, t in zip(labels, pick, strict=True) if t],
        [x for x, t in zip(examples, pick, strict=True) if not t],
        [y for y, t in zip(labels, pick, strict=True) if not t],
        classes=classes, features=features, source=source,
        metadata={"val_fraction": val_fraction, "split_seed": split_seed, **(metadata or {})})


__all__ = ["MAX_FEATURES", "SequenceCorpus", "check_sequence", "sequence_corpus",
           "split_sequences"]
