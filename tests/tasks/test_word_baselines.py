"""Naive Bayes on word unigrams and adjacent pairs: its grams, and its accuracy on the
rotten_tomatoes held-out split (the baseline a word classifier must beat)."""

from __future__ import annotations

import numpy as np
import pytest

from framework.data.corpora.labelled import labelled_corpus
from framework.registry import DATASETS
from framework.tasks.baselines import (
    NaiveBayesWords,
    classify_baselines,
    classify_word_baselines,
)
from tests.helpers import data_file_reason


def test_grams_are_words_and_adjacent_pairs() -> None:
    nb = NaiveBayesWords()
    assert nb.grams("Good, good fun") == ["good", ",", "fun", "good ,", ", good", "good fun"]
    assert NaiveBayesWords(binary=False, bigrams=False).grams("a a b") == ["a", "a", "b"]
    assert nb.grams("") == []


def test_word_evidence_decides() -> None:
    texts = ["a great film", "great fun", "a dull film", "dull and slow", "great", "dull"]
    corpus = labelled_corpus("toy", texts, ["pos", "pos", "neg", "neg", "pos", "neg"],
                             val_fraction=0.0)
    nb = NaiveBayesWords().fit(corpus.train_texts, corpus.train_labels, 2)
    pos, neg = corpus.classes.index("pos"), corpus.classes.index("neg")
    assert nb.predict(["so great", "so dull", "great great film"]).tolist() == [pos, neg, pos]
    assert np.isfinite(nb.log_joint(["never seen words"])).all()


@pytest.mark.slow
def test_rotten_tomatoes_word_baseline() -> None:
    """On the seeded 10% of distinct snippets: words + pairs 0.772, words alone 0.771, both well
    above the majority class (0.560) and the character-trigram baseline."""
    if data_file_reason(DATASETS.get("rotten_tomatoes")):
        pytest.skip("rotten_tomatoes_corpus_full.csv.bz2 is not available")
    corpus = DATASETS.build({"name": "rotten_tomatoes"}).load()
    both = classify_word_baselines(corpus)
    words = classify_word_baselines(corpus, bigrams=False)
    chars = classify_baselines(corpus)
    assert both["baseline_majority_accuracy"] == pytest.approx(0.560, abs=1e-3)
    assert both["baseline_nb_accuracy"] == pytest.approx(0.7718, abs=1e-4)
    assert words["baseline_nb_accuracy"] == pytest.approx(0.7710, abs=1e-4)
    assert both["baseline_nb_accuracy"] > chars["baseline_nb_accuracy"]
