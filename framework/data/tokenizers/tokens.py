"""The ``tokens`` tokenizer: whitespace-separated tokens, such as the music event encoding."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from framework.data.tokenizers.base import Tokenizer
from framework.data.tokenizers.rules import split_tokens
from framework.data.vocab import Vocab
from framework.registry import TOKENIZERS


@TOKENIZERS.register("tokens")
class TokensTokenizer(Tokenizer):
    """``sorted(set(tokens))`` plus ``eos``: exactly :meth:`Vocab.from_tokens`, the vocabulary
    of the music datasets (``C4``, ``_``, ``|``, ...), so their numbers stay the same."""

    vocab_kind = "tokens"

    def split(self, text: str) -> list[str]:
        return split_tokens(text)

    def fit(self, texts: Iterable[str | Sequence[str]], *, eos: str | None = None) -> Vocab:
        """Texts are strings of tokens or already lists of tokens (a music corpus' pieces)."""
        return Vocab.from_tokens(
            (t for text in texts for t in (self.split(text) if isinstance(text, str) else text)),
            eos=eos)


__all__ = ["TokensTokenizer"]
