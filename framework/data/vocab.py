"""A model's vocabulary: a sorted tuple of symbols (characters or string tokens), saved with it.

Sorting makes the id of every symbol independent of Python's string-hash seed (min-char-rnn's
``list(set(data))`` is not), and for the course's Dinosaurus data it gives exactly the course's
``sorted(set(text))`` order: ``"\\n"`` at 0, ``a``..``z`` at 1..26.

Two kinds share one class:

* ``chars`` (the default): every symbol is one character; a text is a ``str`` and is encoded
  character by character.  Its JSON is version 1, unchanged, so old checkpoints load and resume.
* ``tokens``: every symbol is a non-empty string without whitespace (e.g. music events ``C4``,
  ``_``, ``|``); a text is a sequence of tokens or a ``str`` of tokens separated by whitespace,
  and decoding joins tokens with one space.  Its JSON is version 2 (an older rnnlab refuses it
  with a clear message instead of misreading it).
* ``words``: the vocabulary of the ``words`` tokenizer (:mod:`framework.data.tokenizers.words`):
  the unknown token ``unk`` first, then the kept words in the tokenizer's order (not sorted).
  A ``str`` is split by the word rule (lower-cased when ``lower``), every word outside the
  vocabulary encodes to ``unk``'s id and the padding token ``pad`` to -1 (it is not a row).
  Its JSON is version 3 and names the rule, so a later change of the rule cannot silently
  re-split a saved model's inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from framework.data.tokenizers.rules import WORD_RULE, split_words
from framework.errors import DataError

_FORMAT = "rnnlab-vocab"
_VERSION = 1  # character vocabularies
_TOKENS_VERSION = 2  # token vocabularies
_WORDS_VERSION = 3  # word vocabularies
KINDS = ("chars", "tokens", "words")
# Bounds of a word vocabulary, checked before one read from an (untrusted) checkpoint is built.
MAX_VOCAB = 1 << 20
MAX_TOKEN_CHARS = 100


@dataclass(frozen=True)
class Vocab:
    """Unique symbols (sorted, except words); ``eos`` ends an example in line datasets (else
    ``None``); ``unk``, ``pad`` and ``lower`` belong to word vocabularies only."""

    chars: tuple[str, ...]  # the symbols: characters, tokens or words (see ``kind``)
    eos: str | None = None
    kind: str = "chars"
    unk: str | None = None  # words: the token (id 0) of every word outside the vocabulary
    pad: str | None = None  # words: the padding token, encoded as -1 (not a row)
    lower: bool = False  # words: texts are lower-cased before splitting

    def __post_init__(self) -> None:
        chars = tuple(self.chars)
        object.__setattr__(self, "chars", chars)
        if self.kind not in KINDS:
            raise DataError(f"vocabulary kind must be one of {', '.join(KINDS)}, got "
                            f"{self.kind!r}")
        if not chars:
            raise DataError(f"a vocabulary needs at least one {self.unit}")
        if self.kind == "chars":
            if any(not isinstance(c, str) or len(c) != 1 for c in chars):
                raise DataError("every vocabulary entry must be a single character")
        elif any(not isinstance(t, str) or not t or t.split() != [t] for t in chars):
            raise DataError("every token must be a non-empty string without whitespace")
        if self.kind == "words":
            self._check_words(chars)
        else:
            if list(chars) != sorted(set(chars)):
                raise DataError(f"vocabulary {self.unit}s must be unique and sorted")
            if (self.unk, self.pad, self.lower) != (None, None, False):
                raise DataError("unk, pad and lower are options of word vocabularies only")
        if self.eos is not None and self.eos not in chars:
            raise DataError(f"end-of-example {self.unit} {self.eos!r} is not in the vocabulary")

    def _check_words(self, words: tuple[str, ...]) -> None:
        if len(words) > MAX_VOCAB:
            raise DataError(f"a word vocabulary has at most {MAX_VOCAB:,} entries, this one "
                            f"{len(words):,}")
        if any(len(w) > MAX_TOKEN_CHARS for w in words):
            raise DataError(f"every word of a vocabulary has at most {MAX_TOKEN_CHARS} characters")
        if len(set(words)) != len(words):
            raise DataError("vocabulary words must be unique")
        if not isinstance(self.unk, str) or words[0] != self.unk:
            raise DataError(f"a word vocabulary starts with its unknown token, got "
                            f"{words[0]!r} and unk={self.unk!r}")
        if not isinstance(self.pad, str) or not self.pad or self.pad in words:
            raise DataError(f"a word vocabulary needs a padding token outside its words, got "
                            f"pad={self.pad!r}")
        if not isinstance(self.lower, bool):
            raise DataError(f"lower must be true or false, got {self.lower!r}")

    @classmethod
    def from_text(cls, text: str, eos: str | None = None) -> Vocab:
        """``sorted(set(text))``, plus ``eos`` if the text happens not to contain it."""
        symbols = set(text)
        if eos is not None:
            symbols.add(eos)
        return cls(tuple(sorted(symbols)), eos)

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], eos: str | None = None) -> Vocab:
        """A token vocabulary: ``sorted(set(tokens))``, plus ``eos`` if it is not among them."""
        symbols = set(tokens)
        if eos is not None:
            symbols.add(eos)
        return cls(tuple(sorted(symbols)), eos, kind="tokens")

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.chars

    @property
    def is_chars(self) -> bool:
        return self.kind == "chars"

    @property
    def unit(self) -> str:
        """``"character"``, ``"token"`` or ``"word"``, for messages."""
        return {"chars": "character", "tokens": "token", "words": "word"}[self.kind]

    @property
    def sep(self) -> str:
        """What :meth:`decode` puts between symbols: nothing for characters, a space for tokens."""
        return "" if self.is_chars else " "

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

    @property
    def unk_id(self) -> int | None:
        """The id of the unknown token (0 in a word vocabulary), else None."""
        return None if self.unk is None else 0

    def split(self, text: str | Sequence[str]) -> list[str]:
        """The symbols of ``text``: its characters, its whitespace-separated tokens, or its
        words by the word rule."""
        if isinstance(text, str):
            if self.kind == "words":
                return split_words(text, lower=self.lower)
            return list(text) if self.is_chars else text.split()
        return list(text)

    def join(self, symbols: Iterable[str]) -> str:
        return self.sep.join(symbols)

    def encode(self, text: str | Sequence[str]) -> np.ndarray:
        """Ids of ``text`` as an int64 array; unknown symbols are a one-line DataError."""
        stoi = self.stoi
        symbols = text if self.is_chars and isinstance(text, str) else self.split(text)
        if self.kind == "words":
            unk, pad = self.unk_id, self.pad
            return np.fromiter((-1 if w == pad else stoi.get(w, unk) for w in symbols),
                               dtype=np.int64, count=len(symbols))
        try:
            return np.fromiter((stoi[c] for c in symbols), dtype=np.int64, count=len(symbols))
        except KeyError:
            unknown = sorted({c for c in symbols if c not in stoi})
            shown = ", ".join(repr(c) for c in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise DataError(
                f"text contains {len(unknown)} {self.unit}(s) not in the vocabulary: "
                f"{shown}{more}; use only the model's {self.size} {self.unit}s"
            ) from None

    def decode_symbols(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """Symbols of ``ids``; -1 (the 'no symbol' id) is skipped."""
        out = []
        for i in np.asarray(ids, dtype=np.int64).ravel().tolist():
            if i == -1:
                continue
            if not 0 <= i < self.size:
                raise DataError(f"id {i} is outside the vocabulary of size {self.size}")
            out.append(self.chars[i])
        return out

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """The text of ``ids`` (symbols joined by :attr:`sep`); -1 is skipped."""
        return self.join(self.decode_symbols(ids))

    def to_dict(self) -> dict[str, Any]:
        if self.is_chars:  # exactly the version-1 layout: resume compares this JSON verbatim
            return {"format": _FORMAT, "version": _VERSION, "chars": list(self.chars),
                    "eos": self.eos}
        if self.kind == "words":
            return {"format": _FORMAT, "version": _WORDS_VERSION, "kind": "words",
                    "rule": WORD_RULE, "lower": self.lower, "unk": self.unk, "pad": self.pad,
                    "eos": self.eos, "words": list(self.chars)}
        return {"format": _FORMAT, "version": _TOKENS_VERSION, "kind": "tokens",
                "tokens": list(self.chars), "eos": self.eos}

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
            version = obj.get("version")
            if version == _VERSION:
                return cls(tuple(obj["chars"]), obj.get("eos"))
            if version == _TOKENS_VERSION and obj.get("kind") == "tokens":
                return cls(tuple(obj["tokens"]), obj.get("eos"), kind="tokens")
            if version == _WORDS_VERSION and obj.get("kind") == "words":
                return cls._words_from_dict(obj)
            raise ValueError(f"unsupported version {version!r}")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DataError(
                f"malformed vocabulary JSON ({exc}); save vocabularies with Vocab.to_json"
            ) from None

    @classmethod
    def _words_from_dict(cls, obj: Mapping[str, Any]) -> Vocab:
        """A word vocabulary from its parsed JSON, its sizes checked before anything is built."""
        if obj.get("rule") != WORD_RULE:
            raise ValueError(f"word rule {obj.get('rule')!r} is not this rnnlab's {WORD_RULE!r}")
        words = obj["words"]
        if not isinstance(words, list) or not 1 <= len(words) <= MAX_VOCAB:
            raise ValueError(f"words must be a list of 1 to {MAX_VOCAB:,} strings")
        if not all(isinstance(w, str) and len(w) <= MAX_TOKEN_CHARS for w in words):
            raise ValueError(f"every word must be a string of at most {MAX_TOKEN_CHARS} "
                             f"characters")
        try:
            return cls(tuple(words), obj.get("eos"), kind="words", unk=obj.get("unk"),
                       pad=obj.get("pad"), lower=obj.get("lower"))
        except DataError as exc:
            raise ValueError(str(exc)) from None


__all__ = ["KINDS", "MAX_TOKEN_CHARS", "MAX_VOCAB", "Vocab"]
