"""The ``rotten_tomatoes`` dataset (the numbers of shared/data/PROVENANCE.md) and reading bz2
files within the size limit."""

from __future__ import annotations

import bz2

import pytest

from framework.data.files.fetch import read_text
from framework.errors import DataError
from framework.registry import DATASETS
from tests.helpers import data_file_reason


def _corpus(**options):
    reason = data_file_reason(DATASETS.get("rotten_tomatoes"))
    if reason:
        pytest.skip(reason)
    return DATASETS.build({"name": "rotten_tomatoes", **options}).load()


@pytest.fixture(scope="module")
def corpus():
    return _corpus()


def test_snippets_labels_and_held_out_split(corpus) -> None:
    assert corpus.kind == "labelled" and corpus.classes == ("fresh", "rotten")
    assert corpus.metadata["n_unique_texts"] == 12_752
    assert corpus.metadata["n_multi_label_texts"] == 0
    counts = {c: corpus.class_counts("train")[c] + corpus.class_counts("val")[c]
              for c in corpus.classes}
    assert counts == {"fresh": 7_368, "rotten": 5_384}
    assert counts["fresh"] / 12_752 == pytest.approx(0.578, abs=1e-3)
    assert corpus.n_val == 1_275 and corpus.n_train == 12_752 - 1_275
    assert not set(corpus.train_texts) & set(corpus.val_texts)
    # The split depends on split_seed only.
    assert _corpus(split_seed=1).val_texts != corpus.val_texts


def test_plot_summaries_are_left_out(corpus) -> None:
    texts = set(corpus.train_texts + corpus.val_texts)
    assert "Majidi's poetic love story is a ravishing consciousness-raiser, if a bit draggy at " \
           "times." in texts
    assert not any(t.startswith("Vijay Singh Rajput (Amitabh Bachchan)") for t in texts)


def test_bz2_files_are_read_within_the_size_limit(tmp_path, monkeypatch) -> None:
    path = tmp_path / "small.csv.bz2"
    path.write_bytes(bz2.compress(b"a,b\n") + bz2.compress(b"c,d\n"))  # two streams
    assert read_text(path) == "a,b\nc,d\n"
    bomb = tmp_path / "bomb.txt.bz2"
    bomb.write_bytes(bz2.compress(b"x" * 100_000))
    monkeypatch.setattr("framework.data.files.fetch.MAX_DATA_BYTES", 50_000)
    with pytest.raises(DataError, match="decompressed is larger than"):
        read_text(bomb)
    monkeypatch.undo()
    cut = tmp_path / "cut.txt.bz2"
    cut.write_bytes(bz2.compress(b"hello " * 1000)[:-20])
    with pytest.raises(DataError, match="truncated bz2"):
        read_text(cut)
    junk = tmp_path / "junk.txt.bz2"
    junk.write_bytes(b"not bz2 at all")
    with pytest.raises(DataError, match="not a readable bz2 file"):
        read_text(junk)
