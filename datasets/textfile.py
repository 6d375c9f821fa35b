"""Any UTF-8 text file the user names: one example per line ("lines") or continuous ("stream")."""

from __future__ import annotations

from dataclasses import dataclass

from framework.data import TextDataset, check_common
from framework.registry import DATASETS


@dataclass
class TextFileConfig:
    path: str | None = None  # required (checked when the dataset is built): the file
    val_fraction: float = 0.1  # lines: a fixed-seed subset of lines; stream: the last part
    mode: str = "stream"  # lines | stream
    lower: bool = False
    split_seed: int = 0  # lines mode: seed of the held-out subset

    def __post_init__(self) -> None:
        if self.mode not in ("lines", "stream"):
            raise ValueError(f"mode must be 'lines' or 'stream', got {self.mode!r}")
        check_common(self.val_fraction, self.split_seed)


@DATASETS.register("textfile", schema=TextFileConfig)
class TextFile(TextDataset):
    source = None  # no default file: the user's file is used as is, without a checksum
