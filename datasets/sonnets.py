"""Shakespeare's Sonnets, the course's "Writing like Shakespeare" corpus: continuous text.

94275 characters; lower-cased (as the course does) the vocabulary has 38 symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

from framework.data import Source, TextDataset, check_common, github_raw
from framework.registry import DATASETS


@dataclass
class SonnetsConfig:
    path: str | None = None  # your own copy (not checksummed); null: data dir, cache, download
    val_fraction: float = 0.1  # the last 10% of the text; 0 = the course's 31412 windows
    lower: bool = True

    def __post_init__(self) -> None:
        check_common(self.val_fraction)


@DATASETS.register("sonnets", schema=SonnetsConfig)
class Sonnets(TextDataset):
    kind = "stream"
    # The course ships it as shakespeare.txt; Kulbear/deep-learning-coursera, head of PR #51.
    source = Source(
        "sonnets.txt",
        github_raw("Kulbear/deep-learning-coursera", "5c59f99e8e3bfe2c1e977a46422146a2e09d04b8",
                   "Sequence Models/shakespeare.txt"),
        "1b454b67b44e6f367c83a17ed295c46c5d4a1173cf5d09161882af4041bae023",
    )
