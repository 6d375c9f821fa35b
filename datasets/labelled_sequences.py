"""The user's labelled multivariate sequences: an sktime ``.ts``, a CSV of frames or an ``.npz``.

``dataset.path`` is one file, read by its suffix:

- ``.ts``: sktime's format (``@`` headers, ``@data``, channels separated by ``:``, values by
  ``,``, the label last), as ``japanese_vowels``;
- ``.csv``: a header ``sequence,label,<feature>,...`` and one row per time step; the rows of
  one ``sequence`` id are its frames in file order, and carry its label;
- ``.npz``: arrays ``x`` (N, T, D), ``labels`` (N,) and optionally ``lengths`` (N,): sequence
  i is ``x[i, :lengths[i]]``.  Loaded without pickles.

``dataset.test_path`` (same format) is the validation split when given; otherwise a fixed-seed
``val_fraction`` of the sequences is held out.  Features are standardised with the training
frames' statistics; missing values and NaN are refused with the line (or array) they are in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framework.data import check_common
from framework.data.corpora.base import TaskDataset
from framework.data.corpora.sequences import SequenceCorpus, sequence_corpus, split_sequences
from framework.data.files.readers import (
    read_sequences_csv,
    read_sequences_npz,
    read_ts,
    user_path,
)
from framework.errors import DataError
from framework.registry import DATASETS

FORMATS = (".ts", ".csv", ".npz")


def read_sequences(path: Path) -> tuple[list[np.ndarray], list[str], list[str] | None,
                                        list[str]]:
    """``(examples, labels, classes or None, feature names or [])`` of a file, by suffix."""
    suffix = path.suffix.lower()
    if suffix == ".ts":
        x, y, classes = read_ts(path)
        return x, y, classes, []
    if suffix == ".csv":
        x, y, features = read_sequences_csv(path)
        return x, y, None, features
    if suffix == ".npz":
        x, y = read_sequences_npz(path)
        return x, y, None, []
    raise DataError(f"{path} is not a .ts, .csv or .npz file; see datasets/labelled_sequences.py "
                    f"for the layouts")


@dataclass
class LabelledSequencesConfig:
    path: str | None = None  # required: a .ts, .csv or .npz file of labelled sequences
    test_path: str | None = None  # optional: the validation sequences (same format)
    val_fraction: float = 0.2  # without test_path: fraction of the sequences held out
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_common(self.val_fraction, self.split_seed)


@DATASETS.register("labelled_sequences", schema=LabelledSequencesConfig)
class LabelledSequences(TaskDataset):
    kind = "sequences"
    needs_path = True
    contract_skip = "reads the user's sequence files: tests/data/test_sequences.py writes them"

    def load(self) -> SequenceCorpus:
        c = self.config
        path = user_path(str(c.path))
        x, y, classes, features = read_sequences(path)
        if c.test_path:
            test = user_path(c.test_path, "dataset.test_path")
            x_val, y_val, _, test_features = read_sequences(test)
            if features and test_features and test_features != features:
                raise DataError(f"{test} has the features {', '.join(test_features)}, {path} "
                                f"has {', '.join(features)}; use the same columns")
            if classes is None:
                classes = sorted(set(y) | set(y_val))
            return sequence_corpus(self.name, x, y, x_val, y_val, classes=classes,
                                   features=features, source=str(path))
        return split_sequences(self.name, x, y, val_fraction=c.val_fraction,
                               split_seed=c.split_seed, classes=classes, features=features,
                               source=str(path))
