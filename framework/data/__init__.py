"""Data: dataset files, corpora, vocabularies and the feeds that batch them.

What a dataset plugin needs is importable from here::

    from framework.data import Source, TextDataset, check_common
"""

from framework.data.corpora.text import (
    Corpus,
    TextDataset,
    check_common,
    lines_corpus,
    stream_corpus,
    token_lines_corpus,
)
from framework.data.files.fetch import Source, github_raw, locate, read_text

__all__ = ["Corpus", "Source", "TextDataset", "check_common", "github_raw", "lines_corpus",
           "locate", "read_text", "stream_corpus", "token_lines_corpus"]
