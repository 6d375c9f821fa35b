"""Feeds: the course's example order, padding, min-char-rnn's pointer walk, Shakespeare windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from framework.data.corpora.text import lines_corpus, stream_corpus
from framework.data.feeds.base import Batch
from framework.errors import ConfigError, PluginError
from framework.plugins import load_folder
from framework.registry import FEEDS
from tests.conftest import load_dataset

REPO = Path(__file__).resolve().parents[2]
load_folder(REPO / "datasets")
load = load_dataset


@pytest.fixture(scope="module")
def dinos_split():
    return load("dinos")


@pytest.fixture(scope="module")
def sonnets():
    return load("sonnets", val_fraction=0.0)


def make_feed(name, corpus, *, batch_size, seq_len, seed, **options):
    """The feed ``train.feed=name`` builds, with ``options`` as its train.* options."""
    return FEEDS.build({"name": name, **options}, corpus=corpus, batch_size=batch_size,
                       seq_len=seq_len, seed=seed)


def same(a: Batch, b: Batch) -> bool:
    return (np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)
            and a.reset == b.reset)


# ------------------------------------------------------------------------------ example


def test_example_feed_is_the_course_loop(dinos):
    feed = make_feed("example", dinos, batch_size=1, seq_len=25, seed=123, shuffle_seed=0)
    first = feed.batch(0)
    assert dinos.vocab.decode(first.targets[:-1]) == "turiasaurus"
    X = [None, 20, 21, 18, 9, 1, 19, 1, 21, 18, 21, 19]  # the course's first example (j = 0)
    Y = X[1:] + [0]
    assert first.inputs.shape == (12, 1) and first.inputs.dtype == np.int64
    assert first.inputs[:, 0].tolist() == [-1 if x is None else x for x in X]
    assert first.targets[:, 0].tolist() == Y
    assert first.reset is True
    # The whole order is the course's: np.random.seed(0); np.random.shuffle(examples).
    examples = [dinos.vocab.decode(a) for a in dinos.train]
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        np.random.shuffle(examples)
    finally:
        np.random.set_state(saved)
    n = feed.steps_per_epoch
    assert n == 1536
    for j in (0, 1, 2, 1535, 1536, 1537, 35000 - 1):
        b = feed.batch(j)
        assert dinos.vocab.decode(b.targets[:-1, 0]) == examples[j % n]
        assert b.targets[-1, 0] == 0 and b.inputs[0, 0] == -1
        assert b.reset is (j == 0)  # the hidden state is carried across names


def test_example_feed_seed_and_validation(dinos_split):
    feed = make_feed("example", dinos_split, batch_size=1, seq_len=25, seed=0)
    assert feed.steps_per_epoch == len(dinos_split.train)
    val = list(feed.val_batches())
    assert len(val) == len(dinos_split.val) and all(b.reset for b in val)
    assert [dinos_split.vocab.decode(b.targets[:-1, 0]) for b in val] == [
        dinos_split.vocab.decode(a) for a in dinos_split.val]
    with pytest.raises(ConfigError, match="batch_size=1"):
        make_feed("example", dinos_split, batch_size=2, seq_len=25, seed=0)


# ------------------------------------------------------------------------------ names


def test_names_padding_and_masks(dinos_split):
    feed = make_feed("names", dinos_split, batch_size=32, seq_len=25, seed=7)
    lengths = [len(a) for a in dinos_split.train]
    assert feed.steps_per_epoch == -(-len(lengths) // 32)
    seen = []
    for step in range(feed.steps_per_epoch):
        b = feed.batch(step)
        assert b.reset is True and b.inputs.shape == b.targets.shape
        idx = feed.indices(step)
        seen.extend(idx.tolist())
        assert b.inputs.shape == (max(lengths[i] for i in idx) + 1, len(idx))
        assert b.n_tokens == sum(lengths[i] + 1 for i in idx)
        for col, i in enumerate(idx):
            n = lengths[i]
            np.testing.assert_array_equal(b.inputs[1 : n + 1, col], dinos_split.train[i])
            np.testing.assert_array_equal(b.targets[:n, col], dinos_split.train[i])
            assert b.inputs[0, col] == -1 and b.targets[n, col] == 0
            assert (b.targets[n + 1 :, col] == -1).all() and (b.inputs[n + 1 :, col] == -1).all()
    assert sorted(seen) == list(range(len(lengths)))  # each name once per epoch
    assert not np.array_equal(feed.indices(0), feed.indices(feed.steps_per_epoch))  # reshuffled
    val = list(feed.val_batches())
    assert sum(b.inputs.shape[1] for b in val) == len(dinos_split.val)
    assert sum(b.n_tokens for b in val) == sum(len(a) + 1 for a in dinos_split.val)


# ------------------------------------------------------------------------------ stream


def min_char_rnn_walk(n_data: int, seq_length: int, n_steps: int):
    """min-char-rnn's loop, pointer bookkeeping only: yields (p, hprev_was_reset)."""
    p = 0
    for n in range(n_steps):
        reset = False
        if p + seq_length + 1 >= n_data or n == 0:
            reset, p = True, 0
        yield p, reset
        p += seq_length


@pytest.mark.parametrize("n_chars", [26, 27, 50, 51, 52, 53, 100, 1000, 1003])
def test_stream_matches_min_char_rnn_pointer_walk(n_chars):
    rng = np.random.default_rng(n_chars)
    text = "".join(rng.choice(list("abcdefg \n"), size=n_chars))
    corpus = stream_corpus("t", text, val_fraction=0.0)
    data = corpus.train
    feed = make_feed("stream", corpus, batch_size=1, seq_len=25, seed=0)
    for n, (p, reset) in enumerate(min_char_rnn_walk(len(data), 25, 200)):
        b = feed.batch(n)
        np.testing.assert_array_equal(b.inputs[:, 0], data[p : p + 25])
        np.testing.assert_array_equal(b.targets[:, 0], data[p + 1 : p + 26])
        assert b.reset is reset, (n, p)


def test_stream_parallel_tracks_and_validation():
    corpus = load("tinyshakespeare")
    feed = make_feed("stream", corpus, batch_size=16, seq_len=50, seed=0)
    track = len(corpus.train) // 16
    b = feed.batch(3)
    assert b.inputs.shape == (50, 16) and not b.reset
    for k in (0, 5, 15):
        start = k * track + 3 * 50
        np.testing.assert_array_equal(b.inputs[:, k], corpus.train[start : start + 50])
        np.testing.assert_array_equal(b.targets[:, k], corpus.train[start + 1 : start + 51])
    assert feed.batch(feed.steps_per_epoch).reset and feed.batch(0).reset
    val = list(feed.val_batches())
    assert val[0].reset and not any(v.reset for v in val[1:])
    B = val[0].inputs.shape[1]
    assert sum(v.n_tokens for v in val) == (len(corpus.val) // B - 1) * B


def test_stream_over_names_joins_them_with_eos(dinos):
    feed = make_feed("stream", dinos, batch_size=1, seq_len=20, seed=0)
    assert dinos.vocab.decode(feed.batch(0).inputs[:, 0]) == "aachenosaurus\naardony"[:20]


# ------------------------------------------------------------------------------ windows


def test_windows_are_the_course_build_data(sonnets):
    feed = make_feed("windows", sonnets, batch_size=128, seq_len=40, seed=0, stride=3)
    assert feed.n_windows == 31412 and feed.steps_per_epoch == 246
    b = feed.batch(0)
    assert b.inputs.shape == (40, 128) and b.reset
    assert (b.targets[:-1] == -1).all() and b.n_tokens == 128
    data = sonnets.train
    for col, start in enumerate(feed.starts(0)):
        np.testing.assert_array_equal(b.inputs[:, col], data[start : start + 40])
        assert b.targets[-1, col] == data[start + 40]
    starts = np.concatenate([feed.starts(s) for s in range(feed.steps_per_epoch)])
    assert sorted(starts.tolist()) == list(range(0, 94275 - 40, 3))  # each window once an epoch
    assert not np.array_equal(feed.starts(0), feed.starts(feed.steps_per_epoch))  # reshuffled
    every = make_feed("windows", sonnets, batch_size=4, seq_len=40, seed=0,
                      window_targets="all").batch(5)
    np.testing.assert_array_equal(every.targets[:-1], every.inputs[1:])


def test_windows_validation_split():
    corpus = load("sonnets")
    feed = make_feed("windows", corpus, batch_size=64, seq_len=40, seed=0)
    val = list(feed.val_batches())
    assert sum(v.inputs.shape[1] for v in val) == len(range(0, len(corpus.val) - 40, 3))
    np.testing.assert_array_equal(val[0].inputs[:, 1], corpus.val[3:43])


# ------------------------------------------------------------------------------ all kinds


@pytest.mark.parametrize("kind, batch_size", [("example", 1), ("names", 8), ("stream", 4),
                                              ("windows", 8)])
def test_batch_is_a_pure_function_of_the_step(dinos_split, kind, batch_size):
    def feed():
        return make_feed(kind, dinos_split, batch_size=batch_size, seq_len=10, seed=3)

    a, b = feed(), feed()
    steps = [0, 1, 2, 500, 1600, 5000]
    first = {s: a.batch(s) for s in steps}
    for s in reversed(steps):  # out of order, on a fresh feed (as after a resume)
        assert same(b.batch(s), first[s]) and same(a.batch(s), first[s])
    assert same(b.batch(1600), a.batch(1600))


def test_impossible_combinations(dinos, sonnets):
    tiny = stream_corpus("tiny", "abcdefghij", val_fraction=0.0)
    names = lines_corpus("few", "ab\ncd\nef", val_fraction=0.0)
    cases = [
        (("names", sonnets), {}, "one example per line"),
        (("example", sonnets), {"batch_size": 1}, "one example per line"),
        (("names", names), {"batch_size": 4}, "larger than the 3 training examples"),
        (("stream", tiny), {"batch_size": 2, "seq_len": 5}, "lower train.batch_size"),
        (("windows", tiny), {"seq_len": 10}, "not shorter"),
        (("windows", tiny), {"batch_size": 4, "seq_len": 2}, "larger than the 3 windows"),
        (("stream", sonnets), {"seq_len": 0}, "seq_len must be a positive"),
        (("stream", sonnets), {"batch_size": 0}, "batch_size must be a positive"),
        (("windows", sonnets), {"stride": 0}, "train.stride must be >= 1"),
        (("windows", sonnets), {"window_targets": "first"}, "window_targets"),
        (("example", names), {"batch_size": 1, "shuffle_seed": 2**32}, "shuffle_seed"),
    ]
    for (kind, corpus), options, match in cases:
        kwargs = {"batch_size": 2, "seq_len": 4, "seed": 0, **options}
        with pytest.raises(ConfigError, match=match) as info:
            make_feed(kind, corpus, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(PluginError, match="unknown train.feed 'bptt'"):
        make_feed("bptt", sonnets, batch_size=2, seq_len=4, seed=0)


def test_auto_is_names_for_lines_and_stream_for_text(dinos, sonnets):
    assert make_feed("auto", dinos, batch_size=4, seq_len=8, seed=0).kind == "names"
    assert make_feed("auto", sonnets, batch_size=4, seq_len=8, seed=0).kind == "stream"
