"""The user's parallel texts: a UTF-8 file of ``source<TAB>target`` lines, for seq2seq."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framework.data import check_common
from framework.data.corpora.parallel import (
    ParallelCorpus,
    ParallelDataset,
    parallel_corpus,
    split_pairs,
)
from framework.data.files.fetch import read_text
from framework.data.files.readers import user_path
from framework.errors import DataError
from framework.registry import DATASETS


def read_pairs(path: Path, *, lower: bool = False) -> list[tuple[str, str]]:
    """(source, target) of every non-empty line; a line without exactly one tab or with an empty
    side is a DataError naming its line number."""
    pairs = []
    for n, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(f"{path} line {n} has {len(fields)} tab-separated field(s); each "
                            f"line must be source<TAB>target")
        source, target = (f.strip() for f in fields)
        if not source or not target:
            raise DataError(f"{path} line {n} has an empty {'source' if not source else 'target'}"
                            f"; give every line a source and a target")
        pairs.append((source.lower(), target.lower()) if lower else (source, target))
    if not pairs:
        raise DataError(f"{path} has no source<TAB>target lines")
    return pairs


@dataclass
class ParallelTextFileConfig:
    path: str | None = None  # required: a file of source<TAB>target lines (UTF-8)
    val_fraction: float = 0.1  # fraction of the distinct sources held out (with their pairs)
    split_seed: int = 0
    lower: bool = False

    def __post_init__(self) -> None:
        check_common(self.val_fraction, self.split_seed)


@DATASETS.register("parallel_textfile", schema=ParallelTextFileConfig)
class ParallelTextFile(ParallelDataset):
    schema = ParallelTextFileConfig
    needs_path = True
    contract_skip = "reads the user's pairs: tests/data/test_parallel.py writes them"

    def load(self) -> ParallelCorpus:
        path = user_path(str(self.cfg.path))
        pairs = read_pairs(path, lower=self.cfg.lower)
        train, val = split_pairs(pairs, self.cfg.val_fraction, self.cfg.split_seed)
        return parallel_corpus(self.name, train, val, source=str(path),
                               metadata={"val_fraction": self.cfg.val_fraction,
                                         "split_seed": self.cfg.split_seed})
