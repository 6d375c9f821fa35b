"""Text corpora: a text split into training and validation examples and encoded with a vocabulary.

Dataset plugins subclass :class:`TextDataset` and declare only their schema and source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from framework.data.files.fetch import Source, locate, read_text
from framework.data.vocab import Vocab
from framework.errors import ConfigError, DataError
from framework.registry import Plugin

KINDS = ("lines", "stream")


# ------------------------------------------------------------------------------ corpora


@dataclass
class Corpus:
    """An encoded, split dataset.

    ``kind == "lines"``: ``train``/``val`` are lists of int64 arrays, one per example, without the
    end-of-example id (``vocab.eos_id``).  ``kind == "stream"``: they are 1-D int64 arrays.
    """

    name: str
    kind: str
    vocab: Vocab
    train: Any
    val: Any
    n_chars: int
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_val(self) -> int:
        return len(self.val)


def _too_little(path: Path | str, what: str) -> DataError:
    return DataError(f"{path} has too little text to train on ({what}); use a longer file")


def held_out(n: int, val_fraction: float, split_seed: int) -> np.ndarray:
    """Sorted indices of the validation examples: a fixed-seed subset, independent of the run."""
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if n_val == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(split_seed).permutation(n)[:n_val])


def lines_corpus(name: str, text: str, *, val_fraction: float, split_seed: int = 0,
                 source: str = "") -> Corpus:
    """One example per line (stripped, empty lines dropped), ``"\\n"`` ends each example."""
    examples = [line.strip() for line in text.split("\n")]
    examples = [e for e in examples if e]
    if not examples:
        raise _too_little(source, "no non-empty lines")
    vocab = Vocab.from_text(text, eos="\n")
    if vocab.size < 2:
        raise _too_little(source, "only one distinct character")
    val_idx = held_out(len(examples), val_fraction, split_seed)
    if len(val_idx) >= len(examples):
        raise _too_little(source, f"{len(examples)} line(s) leave nothing to train on with "
                                  f"val_fraction={val_fraction}; lower dataset.val_fraction")
    is_val = np.zeros(len(examples), dtype=bool)
    is_val[val_idx] = True
    encoded = [vocab.encode(e) for e in examples]  # original file order is kept in both splits
    return Corpus(
        name=name, kind="lines", vocab=vocab,
        train=[a for a, v in zip(encoded, is_val, strict=True) if not v],
        val=[a for a, v in zip(encoded, is_val, strict=True) if v],
        n_chars=len(text), source=source,
        metadata={"n_examples": len(examples), "val_fraction": val_fraction,
                  "split_seed": split_seed},
    )


def stream_corpus(name: str, text: str, *, val_fraction: float, source: str = "") -> Corpus:
    """Continuous text; the validation split is the last ``val_fraction`` of it."""
    vocab = Vocab.from_text(text)
    if vocab.size < 2:
        raise _too_little(source, f"only one distinct character {vocab.chars[0]!r}")
    ids = vocab.encode(text)
    n_val = int(round(len(ids) * val_fraction))
    n_train = len(ids) - n_val
    if n_train < 2:
        raise _too_little(source, f"{n_train} training character(s); need at least 2")
    return Corpus(
        name=name, kind="stream", vocab=vocab, train=ids[:n_train], val=ids[n_train:],
        n_chars=len(text), source=source, metadata={"val_fraction": val_fraction},
    )


# ------------------------------------------------------------------------------ plugin base


def token_lines_corpus(name: str, examples: Sequence[Sequence[str]], *, eos: str,
                       val_fraction: float, split_seed: int = 0, source: str = "",
                       metadata: dict[str, Any] | None = None) -> Corpus:
    """One example per token sequence (a piece of music, ...), ``eos`` ends each example.

    The token counterpart of :func:`lines_corpus`: the vocabulary is ``sorted(set(tokens))`` plus
    ``eos``, and the validation set is a fixed-seed subset of whole examples, in input order.
    """
    examples = [list(e) for e in examples if len(e)]
    if not examples:
        raise _too_little(source, "no non-empty examples")
    vocab = Vocab.from_tokens((t for e in examples for t in e), eos=eos)
    if vocab.size < 2:
        raise _too_little(source, "only one distinct token")
    val_idx = held_out(len(examples), val_fraction, split_seed)
    if len(val_idx) >= len(examples):
        raise _too_little(source, f"{len(examples)} example(s) leave nothing to train on with "
                                  f"val_fraction={val_fraction}; lower dataset.val_fraction")
    is_val = np.zeros(len(examples), dtype=bool)
    is_val[val_idx] = True
    encoded = [vocab.encode(e) for e in examples]
    return Corpus(
        name=name, kind="lines", vocab=vocab,
        train=[a for a, v in zip(encoded, is_val, strict=True) if not v],
        val=[a for a, v in zip(encoded, is_val, strict=True) if v],
        n_chars=sum(len(e) for e in examples), source=source,
        metadata={"n_examples": len(examples), "val_fraction": val_fraction,
                  "split_seed": split_seed, **(metadata or {})},
    )


def check_common(val_fraction: float, split_seed: int = 0) -> None:
    """Range checks shared by dataset schemas (raise ValueError, as schemas must)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if split_seed < 0:
        raise ValueError(f"split_seed must be >= 0, got {split_seed}")


class TextDataset(Plugin):
    """Base of the text dataset plugins: ``TextDataset(cfg)``, then ``load() -> Corpus``.

    Subclasses set ``source`` (a :class:`Source`, or ``None``: ``dataset.path`` is required) and
    ``kind`` (``"lines"`` or ``"stream"``, used when the schema has no ``mode`` field). The schema
    has ``path`` and ``val_fraction``, and may have ``lower``, ``split_seed`` and ``mode``.
    """

    source: ClassVar[Source | None] = None
    kind: ClassVar[str] = "stream"

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        # Checked here rather than in the schema so that every schema has usable defaults.
        if self.source is None and not str(self.cfg.path or "").strip():
            raise ConfigError(f"dataset '{self.name}' has no default file; "
                              f"set dataset.path=/path/to/your.txt")

    @property
    def mode(self) -> str:
        return getattr(self.cfg, "mode", self.kind)

    def locate(self) -> Path:
        return locate(self.source, self.cfg.path)

    def load(self) -> Corpus:
        path = self.locate()
        text = read_text(path, lower=bool(getattr(self.cfg, "lower", False)))
        if self.mode == "lines":
            return lines_corpus(self.name, text, val_fraction=self.cfg.val_fraction,
                                split_seed=getattr(self.cfg, "split_seed", 0),
                                source=str(path))
        return stream_corpus(self.name, text, val_fraction=self.cfg.val_fraction,
                             source=str(path))
