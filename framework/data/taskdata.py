"""Task corpora: labelled texts (classification) and real-valued series (forecasting).

Files are found exactly as for the text datasets (:func:`framework.data.locate`: ``dataset.path``,
then ``$RNNLAB_DATA_DIR``, then the sha256-checked download cache) and read by
:mod:`framework.data.taskfiles`; this module turns what was read into corpora.

- :class:`LabelledCorpus` (``kind == "labelled"``): texts with integer labels into ``classes``,
  a character vocabulary without an end-of-example symbol, and a train/val split.  (text, label)
  pairs are de-duplicated, then a fixed-seed fraction of the *distinct texts* is held out, so a
  text that occurs under several labels is wholly in one split.
- :class:`SeriesCorpus` (``kind == "series"``): float64 values ``(N, D)`` in original units,
  optional timestamps, the count of missing values and how they were handled, the last
  ``val_fraction`` as validation, and standardisation statistics of the training part only.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framework.data.vocab import Vocab
from framework.errors import ConfigError, DataError
from framework.registry import Plugin

MISSING_POLICIES = ("interpolate", "drop", "error")
# Letters that NFKD does not decompose into an ASCII letter plus combining marks.
_ASCII_LETTERS = {"ß": "ss", "ẞ": "SS", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d",
                  "Đ": "D", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i", "þ": "th",
                  "Þ": "Th", "ð": "d", "Ð": "D"}


# ------------------------------------------------------------------------------ labelled texts


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


@dataclass
class LabelledCorpus:
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


def _held_out_texts(unique: Sequence[str], val_fraction: float, split_seed: int) -> set[str]:
    n = len(unique)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    picked = np.random.default_rng(split_seed).permutation(n)[:n_val]
    return {unique[i] for i in picked.tolist()}


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


# ------------------------------------------------------------------------------ series


@dataclass
class SeriesCorpus:
    """A real-valued series ``values`` (N, D) float64, original units; the last ``n_val`` rows
    are validation.  ``mean``/``std`` (D,) are of the training rows only."""

    name: str
    values: np.ndarray
    columns: tuple[str, ...]
    times: np.ndarray | None  # (N,) float64 or datetime64, increasing; None: row index
    n_train: int
    mean: np.ndarray
    std: np.ndarray
    n_missing: int  # missing values in the file (before handling)
    missing: str  # how they were handled: interpolate | drop | error
    observed: np.ndarray  # (N,) bool, False where a row holds an interpolated value
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "series"

    @property
    def n_val(self) -> int:
        return len(self.values) - self.n_train

    @property
    def dim(self) -> int:
        return self.values.shape[1]

    @property
    def train(self) -> np.ndarray:
        return self.values[: self.n_train]

    @property
    def val(self) -> np.ndarray:
        return self.values[self.n_train :]

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Original units -> standardised with the training statistics."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def unscale(self, z: np.ndarray) -> np.ndarray:
        """Standardised -> original units."""
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


def time_axis(times: np.ndarray | None, n: int) -> np.ndarray:
    """Times as float64 (datetime64 in seconds) for interpolation; the row index if None."""
    if times is None:
        return np.arange(n, dtype=np.float64)
    if np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[s]").astype(np.float64)
    return np.asarray(times, dtype=np.float64)


def handle_missing(values: np.ndarray, times: np.ndarray | None, policy: str, *,
                   where: str = "the series", columns: Sequence[str] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(values, times, observed)`` with the NaNs of ``values`` (N, D) handled by ``policy``.

    ``interpolate``: linear in time (the timestamps if given, else the row index); values
    before the first or after the last observation take the nearest observed value.
    ``drop``: rows with any missing value are removed.  ``error``: any missing value is an error.
    """
    if policy not in MISSING_POLICIES:
        raise ConfigError(f"dataset.missing must be one of {', '.join(MISSING_POLICIES)}, "
                          f"got {policy!r}")
    values = np.array(values, dtype=np.float64)
    bad = np.isnan(values)
    observed = ~bad.any(axis=1)
    if not bad.any():
        return values, times, observed
    if policy == "error":
        rows = np.flatnonzero(~observed)
        shown = ", ".join(str(r + 1) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise DataError(f"{where} has {int(bad.sum())} missing value(s) (data rows {shown}); "
                        f"set dataset.missing=interpolate or dataset.missing=drop")
    if policy == "drop":
        kept_times = None if times is None else times[observed]
        return values[observed], kept_times, np.ones(int(observed.sum()), dtype=bool)
    t = time_axis(times, len(values))
    for d in range(values.shape[1]):
        m = bad[:, d]
        if m.all():
            column = repr(columns[d]) if columns else str(d)
            raise DataError(f"{where}: column {column} has no values at all; use another column")
        values[m, d] = np.interp(t[m], t[~m], values[~m, d])
    return values, times, observed


def series_corpus(name: str, values: np.ndarray, *, columns: Sequence[str],
                  times: np.ndarray | None = None, missing: str = "interpolate",
                  val_fraction: float = 0.2, source: str = "",
                  metadata: dict[str, Any] | None = None) -> SeriesCorpus:
    """Handle missing values (NaN in ``values``), split off the last ``val_fraction``, scale."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    where = source or name
    n_missing = int(np.isnan(values).sum())
    n_rows = len(values)
    values, times, observed = handle_missing(values, times, missing, where=where,
                                             columns=columns)
    n = len(values)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    n_train = n - n_val
    if n_train < 2:
        raise DataError(f"{where} has {n} usable row(s), too few for a series: it needs at "
                        f"least 2 training rows and {n_val} validation row(s) with "
                        f"val_fraction={val_fraction}; use a longer series")
    mean = values[:n_train].mean(axis=0)
    std = values[:n_train].std(axis=0)
    if not np.all(std > 0):
        const = [c for c, s in zip(columns, std, strict=True) if not s > 0]
        raise DataError(f"{where}: column {', '.join(const)} is constant over the training "
                        f"part and cannot be scaled; use another column")
    meta = {"n_rows": n, "n_missing": n_missing, "missing": missing,
            "n_dropped": n_rows - n, "n_interpolated_rows": int((~observed).sum()),
            "val_fraction": val_fraction, **(metadata or {})}
    return SeriesCorpus(name=name, values=values, columns=tuple(columns), times=times,
                        n_train=n_train, mean=mean, std=std, n_missing=n_missing,
                        missing=missing, observed=observed, source=source, metadata=meta)


# ------------------------------------------------------------------------------ plugin base


def check_missing(missing: str) -> None:
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}")


class TaskDataset(Plugin):
    """Base of the task dataset plugins: ``TaskDataset(cfg)``, then ``load()`` -> corpus.

    Subclasses set ``kind`` ("labelled" or "series") and either ``source`` (one
    :class:`~framework.data.Source`) or ``sources`` (several, e.g. one file per class).
    """

    kind: ClassVar[str]
    source: ClassVar[Any] = None
    sources: ClassVar[tuple[Any, ...]] = ()
    needs_path: ClassVar[bool] = False

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        self.config = self.cfg
        if self.needs_path and not str(getattr(self.config, "path", "") or "").strip():
            raise ConfigError(f"dataset '{self.name}' has no default file; "
                              f"set dataset.path=/path/to/your/data")

    def load(self) -> LabelledCorpus | SeriesCorpus:
        raise NotImplementedError


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


class SeriesDataset(TaskDataset):
    """A series read from one CSV; subclasses implement :meth:`read`.  Schema fields used here:
    ``val_fraction``, ``missing``."""

    kind = "series"

    def read(self) -> tuple[np.ndarray, np.ndarray | None, list[str], str]:
        """``(values with NaN for missing, times or None, column names, source description)``."""
        raise NotImplementedError

    def load(self) -> SeriesCorpus:
        values, times, columns, source = self.read()
        return series_corpus(self.name, values, columns=columns, times=times,
                             missing=self.config.missing, val_fraction=self.config.val_fraction,
                             source=source)


__all__ = [
    "MISSING_POLICIES", "LabelledCorpus", "LabelledTextDataset",
    "SeriesCorpus", "SeriesDataset", "TaskDataset",
    "check_missing", "fold_ascii", "handle_missing", "labelled_corpus",
    "prepare_text", "series_corpus", "time_axis",
]
