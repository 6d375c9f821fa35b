"""The ``chars`` tokenizer: every character is a symbol (every text dataset before words)."""

from __future__ import annotations

from collections.abc import Iterable

from framework.data.tokenizers.base import Tokenizer
from framework.data.tokenizers.rules import split_chars
from framework.data.vocab import Vocab
from framework.registry import TOKENIZERS


@TOKENIZERS.register("chars")
class CharsTokenizer(Tokenizer):
    """``sorted(set(characters))`` of the texts, plus ``eos``: exactly :meth:`Vocab.from_text`,
    so ids, and every seeded number, are those of the character corpora."""

    vocab_kind = "chars"

    def split(self, text: str) -> list[str]:
        return split_chars(text)

    def fit(self, texts: Iterable[str], *, eos: str | None = None) -> Vocab:
        return Vocab.from_text("".join(texts), eos=eos)


__all__ = ["CharsTokenizer"]
