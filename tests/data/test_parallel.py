"""Parallel corpora, the ``parallel`` feed and the ``dates`` and ``parallel_textfile`` datasets."""

from __future__ import annotations

import builtins
import datetime
import re
import sys

import numpy as np
import pytest

from framework.data.corpora.parallel import END, UNKNOWN, encode_source, parallel_corpus
from framework.data.feeds.parallel import pad_pairs
from framework.errors import ConfigError, DataError
from framework.registry import DATASETS, FEEDS

pytest.importorskip("faker", reason="the dates dataset needs the dates extra")
pytest.importorskip("babel", reason="the dates dataset needs the dates extra")

ISO = re.compile(r"\d{4}-\d{2}-\d{2}$")


def dates(**options):
    return DATASETS.build({"name": "dates", "n_train": 400, "n_val": 100, **options}).load()


def test_dates_are_reproducible_disjoint_and_within_the_limits():
    corpus = dates()
    assert corpus.kind == "parallel" and (corpus.n_train, corpus.n_val) == (400, 100)
    assert dates().train_pairs == corpus.train_pairs  # the same seed, the same pairs
    assert dates(seed=1).train_pairs != corpus.train_pairs
    sources = [s for s, _ in corpus.train_pairs]
    assert len(set(sources)) == len(sources)
    assert not set(sources) & {s for s, _ in corpus.val_pairs}
    for source, target in corpus.train_pairs + corpus.val_pairs:
        assert len(source) <= 30 and ISO.match(target) and source == source.lower()
        assert "," not in source
    assert corpus.tgt_vocab.chars == tuple(END + "-0123456789")
    assert UNKNOWN in corpus.src_vocab.stoi


def test_dates_use_the_calendar_year_unless_the_course_patterns_are_asked_for():
    from babel.dates import format_date

    plugin = sys.modules[DATASETS.get("dates").__module__]  # datasets/ is loaded by path
    human = plugin.human
    new_year = datetime.date(2018, 12, 31)
    assert human(new_year, "d MMM yyy", format_date, False) == "31 dec 2018"
    assert human(new_year, "d MMM yyy", format_date, True) == "31 dec 2019"  # the course's YYY
    assert human(datetime.date(2018, 5, 9), "full", format_date, False) == "wednesday may 9 2018"
    assert len(plugin.FORMATS) == 14


def test_dates_without_the_extra_is_one_line(monkeypatch):
    real_import = builtins.__import__

    def no_faker(name, *args, **kwargs):
        if name.split(".")[0] in ("faker", "babel"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faker)
    with pytest.raises(ConfigError, match=r"needs the optional packages faker and babel; "
                                          r"install them with pip install -e \"\.\[dates\]\""):
        dates()


def test_unknown_source_characters_map_to_the_unknown_token():
    corpus = parallel_corpus("p", [("ab", "x"), ("ba", "y")], [("ac", "x")])
    ids, unknown = encode_source(corpus.src_vocab, "acb")
    assert unknown == ["c"] and ids[1] == corpus.src_vocab.stoi[UNKNOWN]
    assert corpus.val[0][0][1] == corpus.src_vocab.stoi[UNKNOWN]
    with pytest.raises(DataError, match="in both splits"):
        parallel_corpus("p", [("ab", "x")], [("ab", "y")])


def test_the_feed_pads_both_sides_and_shifts_the_target():
    corpus = parallel_corpus("p", [("abc", "xy"), ("a", "yyy"), ("bb", "x")], [("ca", "y")])
    end = corpus.tgt_vocab.eos_id
    batch = pad_pairs(corpus.train[:2], end)
    x, y = corpus.tgt_vocab.stoi["x"], corpus.tgt_vocab.stoi["y"]
    np.testing.assert_array_equal(batch.lengths, [3, 1])
    np.testing.assert_array_equal(batch.inputs[:, 1], [corpus.src_vocab.stoi["a"], -1, -1])
    np.testing.assert_array_equal(batch.targets_in, [[-1, -1], [x, y], [y, y], [-1, y]])
    np.testing.assert_array_equal(batch.targets, [[x, y], [y, y], [end, y], [-1, end]])
    np.testing.assert_array_equal(batch.mask, [[True, True], [True, False], [True, False]])
    assert batch.n_tokens == 7
    feed = FEEDS.build({"name": "parallel"}, corpus=corpus, batch_size=2, seed=3)
    assert feed.steps_per_epoch == 2 and [b.size for b in feed.val_batches()] == [1]
    for step in (5, 0, 5):  # a pure function of the step
        again = feed.batch(step)
        np.testing.assert_array_equal(again.inputs, feed.batch(step).inputs)
    with pytest.raises(ConfigError, match="larger than the 3 training pairs"):
        FEEDS.build({"name": "parallel"}, corpus=corpus, batch_size=4, seed=0)


@pytest.mark.parametrize("feed", ["names", "stream", "windows", "example", "labelled", "series",
                                  "auto"])
def test_the_other_feeds_refuse_a_parallel_corpus_in_one_line(feed):
    corpus = parallel_corpus("p", [("abc", "xy"), ("a", "yyy")], [("ca", "y")])
    with pytest.raises(ConfigError, match="is parallel") as info:
        FEEDS.build({"name": feed}, corpus=corpus, batch_size=1, seq_len=2, seed=0)
    assert "\n" not in str(info.value)


def test_parallel_textfile_reads_pairs_and_names_a_malformed_line(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{w}\t{w[::-1]}\n" for w in ["one", "two", "three", "four",
                                                          "five", "six", "seven"]) + "\n")
    corpus = DATASETS.build({"name": "parallel_textfile", "path": str(path),
                             "val_fraction": 0.3}).load()
    assert (corpus.n_train, corpus.n_val) == (5, 2)
    assert ("three", "eerht") in corpus.train_pairs + corpus.val_pairs
    path.write_text("one\teno\ntwo owt\n")
    with pytest.raises(DataError, match=r"line 2 has 1 tab-separated field\(s\)"):
        DATASETS.build({"name": "parallel_textfile", "path": str(path)}).load()
    path.write_text("one\teno\n\t owt\n")
    with pytest.raises(DataError, match="line 2 has an empty source"):
        DATASETS.build({"name": "parallel_textfile", "path": str(path)}).load()
    with pytest.raises(ConfigError, match="set dataset.path"):
        DATASETS.build({"name": "parallel_textfile"})
