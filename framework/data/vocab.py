"""The character vocabulary: a sorted tuple of symbols, saved with every model.

Sorting makes the id of every character independent of Python's string-hash seed (min-char-rnn's
``list(set(data))`` is not), and for the course's Dinosaurus data it gives exactly the course's
``sorted(set(text))`` order: ``"\\n"`` at 0, ``a``..``z`` at 1..26.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from framework.errors import DataError

_FORMAT = "rnnlab-vocab"
_VERSION = 1


@dataclass(frozen=True)
class Vocab:
    """Sorted, unique characters; ``eos`` ends an example in line datasets (else ``None``)."""

    chars: tuple[str, ...]
    eos: str | None = None

    def __post_init__(self) -> None:
        chars = tuple(self.chars)
        object.__setattr__(self, "chars", chars)
        if not chars:
            raise DataError("a vocabulary needs at least one character")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise DataError("every vocabulary entry must be a single character")
        if list(chars) != sorted(set(chars)):
            raise DataError("vocabulary characters must be unique and sorted")
        if self.eos is not None and self.eos not in chars:
            raise DataError(f"end-of-example character {self.eos!r} is not in the vocabulary")

    @classmethod
    def from_text(cls, text: str, eos: str | None = None) -> Vocab:
        """``sorted(set(text))``, plus ``eos`` if the text happens not to contain it."""
        symbols = set(text)
        if eos is not None:
            symbols.add(eos)
        return cls(tuple(sorted(symbols)), eos)

    @property
    def size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    @cached_property
    def stoi(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    @property
    def itos(self) -> dict[int, str]:
        return dict(enumerate(self.chars))

    @property
    def eos_id(self) -> int | None:
        return None if self.eos is None else self.stoi[self.eos]

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text`` as an int64 array; unknown characters are a one-line DataError."""
        stoi = self.stoi
        try:
            return np.fromiter((stoi[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError:
            unknown = sorted({c for c in text if c not in stoi})
            shown = ", ".join(repr(c) for c in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise DataError(
                f"text contains {len(unknown)} character(s) not in the vocabulary: {shown}{more}; "
                f"use only the model's {self.size} characters"
            ) from None

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Characters of ``ids``; -1 (the 'no character' id) is skipped."""
        out = []
        for i in np.asarray(ids, dtype=np.int64).ravel().tolist():
            if i == -1:
                continue
            if not 0 <= i < self.size:
                raise DataError(f"id {i} is outside the vocabulary of size {self.size}")
            out.append(self.chars[i])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "version": _VERSION, "chars": list(self.chars), "eos": self.eos}

    def to_json(self) -> str:
        # ensure_ascii keeps the file 7-bit clean whatever characters the corpus has.
        return json.dumps(self.to_dict(), ensure_ascii=True)

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> Vocab:
        """Inverse of :meth:`to_json`; accepts the JSON text or the already-parsed dict."""
        try:
            obj = json.loads(data) if isinstance(data, str | bytes) else dict(data)
            if obj.get("format") != _FORMAT:
                raise ValueError(f"format is {obj.get('format')!r}, expected {_FORMAT!r}")
            if obj.get("version") != _VERSION:
                raise ValueError(f"unsupported version {obj.get('version')!r}")
            return cls(tuple(obj["chars"]), obj.get("eos"))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DataError(
                f"malformed vocabulary JSON ({exc}); save vocabularies with Vocab.to_json"
            ) from None


__all__ = ["Vocab"]
