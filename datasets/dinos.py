"""Dinosaur names, the course's "Dinosaurus Island" data: one name per line, lower-cased.

1536 names, 19909 characters; vocabulary sorted(set(text)) = 27 symbols ("\\n" = 0, a..z = 1..26).
"""

from __future__ import annotations

from dataclasses import dataclass

from framework.data import Source, TextDataset, check_common, github_raw
from framework.registry import DATASETS


@dataclass
class DinosConfig:
    path: str | None = None  # your own copy (not checksummed); null: data dir, cache, download
    val_fraction: float = 0.1  # 0 = train on all names in file order, as the course does
    split_seed: int = 0  # seed of the held-out subset, fixed independently of the run seed
    lower: bool = True

    def __post_init__(self) -> None:
        check_common(self.val_fraction, self.split_seed)


@DATASETS.register("dinos", schema=DinosConfig)
class Dinos(TextDataset):
    kind = "lines"
    # Kulbear/deep-learning-coursera, head of PR #51 (see shared/data/PROVENANCE.md).
    source = Source(
        "dinos.txt",
        github_raw("Kulbear/deep-learning-coursera", "5c59f99e8e3bfe2c1e977a46422146a2e09d04b8",
                   "Sequence Models/dinos.txt"),
        "ad6465621cf56c08f71d4fbb40cf7eab763f9df42c54cc460d6c4d86e9c927fb",
    )
