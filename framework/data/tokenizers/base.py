"""The tokenizer contract: split a text into symbols, fit a vocabulary on the training texts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from framework.data.vocab import Vocab
from framework.errors import DataError
from framework.registry import Plugin


class Tokenizer(Plugin):
    """Base class of the tokenizer plugins (registry ``TOKENIZERS``).

    ``split(text)`` is the tokenizer's rule; ``fit(texts, eos=)`` builds the :class:`Vocab` a
    model is trained with, from the texts it is given (the caller passes the training split
    only: no validation word may shape the vocabulary).  The vocabulary it returns is
    self-contained: ``vocab.encode(text)`` applies the same rule, so a checkpoint's
    ``Vocab.from_json`` is all that prediction needs.  ``vocab_kind`` is the :attr:`Vocab.kind`
    this tokenizer produces, and :meth:`check_vocab` refuses a vocabulary of another kind.
    """

    vocab_kind: ClassVar[str]

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def fit(self, texts: Iterable[str], *, eos: str | None = None) -> Vocab:
        raise NotImplementedError

    def check_vocab(self, vocab: Vocab) -> Vocab:
        """``vocab`` if it is of this tokenizer's kind, else a one-line DataError."""
        if vocab.kind != self.vocab_kind:
            raise DataError(f"tokenizer '{self.name}' makes {self.vocab_kind} vocabularies, but "
                            f"this one is of {vocab.kind}; use the tokenizer the model was "
                            f"trained with")
        return vocab


__all__ = ["Tokenizer"]
