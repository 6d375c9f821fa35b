"""UCI Japanese Vowels: 9 speakers, 12 LPC cepstrum coefficients per frame, 7 to 29 frames.

Sequence classification (which speaker said the vowels) from sktime's ``.ts`` copies: the
official split, 270 training utterances (30 per speaker) and 370 test utterances (24 to 88 per
speaker), the test file being the validation split.  Without a local copy the pinned sktime
1.2.0 wheel is downloaded from the package index and only the two files are kept (their sha256
and the wheel's are checked; sktime is never installed).  Features are standardised with the
training frames' per-coefficient mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framework.data import Source, locate
from framework.data.corpora.base import TaskDataset
from framework.data.corpora.sequences import SequenceCorpus, sequence_corpus
from framework.data.files.readers import read_ts, user_path
from framework.errors import DataError
from framework.registry import DATASETS

_WHEEL = ("https://files.pythonhosted.org/packages/eb/67/"
          "98c89e7a17691ca473b7cc7200f74e43e47ad61680db59bfe791f341b056/"
          "sktime-1.2.0-py3-none-any.whl")
_WHEEL_SHA = "dbffc6731d2d683b668dceb5e2bbc5804bebc8446b4c580803a281684d90e4ae"
_FILES = {"TRAIN": "68a430eabd919cc77f40b1f5f3bc0dcafacc1486bca9260785aeb7d262cc78cd",
          "TEST": "b3d41d6a0ca3bcad3afb9ca7d4365382aa51341e2e58bae2a574babdda5b9462"}


@dataclass
class JapaneseVowelsConfig:
    path: str | None = None  # a folder with your JapaneseVowels_{TRAIN,TEST}.ts (not checksummed)


@DATASETS.register("japanese_vowels", schema=JapaneseVowelsConfig)
class JapaneseVowels(TaskDataset):
    kind = "sequences"
    sources = tuple(
        Source(f"JapaneseVowels/JapaneseVowels_{part}.ts", _WHEEL, sha,
               member=f"sktime/datasets/data/JapaneseVowels/JapaneseVowels_{part}.ts",
               archive_sha256=_WHEEL_SHA)
        for part, sha in _FILES.items())

    def files(self) -> tuple[Path, Path]:
        if self.config.path:
            folder = user_path(self.config.path)
            paths = tuple(folder / Path(s.filename).name for s in self.sources)
            for p in paths:
                if not p.is_file():
                    raise DataError(f"dataset.path {folder} has no {p.name}; point it at a "
                                    f"folder with JapaneseVowels_TRAIN.ts and _TEST.ts")
            return paths  # type: ignore[return-value]
        train, test = (locate(s) for s in self.sources)
        return train, test

    def load(self) -> SequenceCorpus:
        train_path, test_path = self.files()
        x_train, y_train, classes = read_ts(train_path)
        x_test, y_test, _ = read_ts(test_path)
        return sequence_corpus(self.name, x_train, y_train, x_test, y_test, classes=classes,
                               source=str(train_path.parent),
                               metadata={"split": "official 270 train / 370 test"})
