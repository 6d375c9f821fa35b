"""The splitting rules of the tokenizers: characters, whitespace-separated tokens, words.

Pure functions of a text, shared by the tokenizer plugins and by
:class:`~framework.data.vocab.Vocab` (which re-applies a word vocabulary's rule when it encodes a
new text, at prediction time).

The word rule (version 1) is the regular expression ``\\w+(?:'\\w+)?|[^\\w\\s]``: a run of
letters, digits or underscores, optionally joined by one apostrophe to another such run
(``don't``, ``it's``, ``o'clock`` stay one word), or any single character that is neither a word
character nor whitespace (every punctuation mark is its own token: ``"fun!"`` -> ``fun``, ``!``).
``\\w`` is Unicode-aware, so accented words are words.  Whitespace separates and is dropped.
Lower-casing, when asked for, is ``str.lower`` applied before matching.
"""

from __future__ import annotations

import re

WORD_RULE = "words-1"  # the name stored with a word vocabulary: the rule below, unchanged
WORD_PATTERN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def split_chars(text: str) -> list[str]:
    """Every character of ``text``, whitespace and newlines included."""
    return list(text)


def split_tokens(text: str) -> list[str]:
    """The whitespace-separated tokens of ``text`` (music events: ``C4 _ | ...``)."""
    return text.split()


def split_words(text: str, *, lower: bool = True) -> list[str]:
    """The words and punctuation marks of ``text`` by the word rule (see the module docstring)."""
    return WORD_PATTERN.findall(text.lower() if lower else text)


__all__ = ["WORD_PATTERN", "WORD_RULE", "split_chars", "split_tokens", "split_words"]
