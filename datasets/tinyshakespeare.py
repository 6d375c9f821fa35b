"""Karpathy's tiny-shakespeare (char-rnn, min-char-rnn): continuous text, case kept.

1115394 characters, 65 symbols (sorted, unlike min-char-rnn's hash-ordered list(set(data))).
"""

from __future__ import annotations

from dataclasses import dataclass

from framework.data import Source, TextDataset, check_common, github_raw
from framework.registry import DATASETS


@dataclass
class TinyShakespeareConfig:
    path: str | None = None  # your own copy (not checksummed); null: data dir, cache, download
    val_fraction: float = 0.05  # the last 5% of the text (char-rnn's default val_frac)
    lower: bool = False

    def __post_init__(self) -> None:
        check_common(self.val_fraction)


@DATASETS.register("tinyshakespeare", schema=TinyShakespeareConfig)
class TinyShakespeare(TextDataset):
    kind = "stream"
    source = Source(
        "tinyshakespeare.txt",
        github_raw("karpathy/char-rnn", "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e",
                   "data/tinyshakespeare/input.txt"),
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    )
