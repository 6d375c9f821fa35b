"""The ``words`` tokenizer: words and punctuation by a documented rule, with a bounded vocabulary.

The rule is :func:`~framework.data.tokenizers.rules.split_words` (lower-casing optional). The
vocabulary is fitted on the texts given (the training split) and holds:

- the unknown token ``unk`` at id 0: every word of a later text that is not in the vocabulary;
- the words seen at least ``min_count`` times, most frequent first (ties in alphabetical order,
  so the ids do not depend on the order of the texts or on Python's hash seed), at most
  ``max_size`` entries in all (the unknown token included);
- the end token ``eos`` after ``unk`` when the caller asks for one (a language model's lines).

The padding token ``pad`` is not a row of the vocabulary: it encodes to id -1, the id every
feed pads with and every embedding and cell reads as a zero input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from framework.data.tokenizers.base import Tokenizer
from framework.data.tokenizers.rules import split_words
from framework.data.vocab import MAX_TOKEN_CHARS, MAX_VOCAB, Vocab
from framework.errors import DataError
from framework.registry import TOKENIZERS


def _special(key: str, value: str) -> None:
    if not isinstance(value, str) or not value or value.split() != [value]:
        raise ValueError(f"{key} must be a non-empty string without whitespace, got {value!r}")
    if len(value) > MAX_TOKEN_CHARS:
        raise ValueError(f"{key} must be at most {MAX_TOKEN_CHARS} characters")
    if split_words(value, lower=False) == [value]:
        raise ValueError(f"{key}={value!r} could be a word of a text; use a token with "
                         f"punctuation such as '<{value}>'")


@dataclass
class WordsConfig:
    lower: bool = True  # lower-case texts before splitting
    min_count: int = 1  # a word needs this many occurrences in the training texts
    max_size: int | None = None  # at most this many entries, the unknown token included
    unk: str = "<unk>"  # stands for every word outside the vocabulary (id 0)
    pad: str = "<pad>"  # the padding token: id -1, not a row of the vocabulary

    def __post_init__(self) -> None:
        if isinstance(self.min_count, bool) or self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        if self.max_size is not None and not 2 <= self.max_size <= MAX_VOCAB:
            raise ValueError(f"max_size must be in [2, {MAX_VOCAB}] or null (no limit), got "
                             f"{self.max_size}")
        _special("unk", self.unk)
        _special("pad", self.pad)
        if self.unk == self.pad:
            raise ValueError(f"unk and pad must differ, both are {self.unk!r}")


@TOKENIZERS.register("words", schema=WordsConfig)
class WordsTokenizer(Tokenizer):
    """Words and punctuation marks; see the module docstring for the vocabulary it fits."""

    vocab_kind = "words"
    cfg: WordsConfig

    def split(self, text: str) -> list[str]:
        return split_words(text, lower=self.cfg.lower)

    def counts(self, texts: Iterable[str | Sequence[str]]) -> Counter[str]:
        """How often each word occurs in ``texts`` (strings, or lists of words already split)."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(self.split(text) if isinstance(text, str) else text)
        return counts

    def fit(self, texts: Iterable[str | Sequence[str]], *, eos: str | None = None) -> Vocab:
        c = self.cfg
        counts = self.counts(texts)
        specials = [c.unk] if eos is None else [c.unk, eos]
        for token in specials[1:]:
            if token in (c.unk, c.pad):
                raise DataError(f"the end token {token!r} must differ from the unknown and "
                                f"padding tokens")
        # Words longer than MAX_TOKEN_CHARS (a pasted URL) stay unknown: a vocabulary entry is
        # bounded so that a checkpoint's vocabulary can be checked before it is built.
        kept = sorted((w for w, n in counts.items() if n >= c.min_count and w not in specials
                       and len(w) <= MAX_TOKEN_CHARS), key=lambda w: (-counts[w], w))
        limit = MAX_VOCAB if c.max_size is None else c.max_size
        kept = kept[: max(0, limit - len(specials))]
        if not kept:
            raise DataError(f"no word occurs at least tokenizer.min_count={c.min_count} times in "
                            f"the {sum(counts.values())} training words; lower "
                            f"tokenizer.min_count or use a larger dataset")
        return Vocab(tuple(specials + kept), eos=eos, kind="words", unk=c.unk, pad=c.pad,
                     lower=c.lower)


__all__ = ["WordsConfig", "WordsTokenizer"]
