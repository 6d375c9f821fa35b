"""Labelled multivariate sequences: the sktime ``.ts`` reader and its refusals, the
``japanese_vowels`` dataset (official split), the user's ``.ts``/CSV/NPZ route, train-only
standardisation, and the ``sequences`` feed (padded float batches, a pure function of the step)."""

from __future__ import annotations

import numpy as np
import pytest

from framework.data.corpora.sequences import check_sequence, split_sequences
from framework.data.feeds.labelled import reverse_padded
from framework.data.files.readers import read_ts
from framework.errors import ConfigError, DataError
from framework.registry import DATASETS, FEEDS
from tests.helpers import data_file_reason

HEADER = "# a comment\n@problemName toy\n@univariate false\n@dimensions 2\n" \
         "@equalLength false\n@classLabel true a b\n@data\n"
EXAMPLES = ["1,2,3:4,5,6:a", "0.5,1.5:2,2.5:b", "7,8,9,10:1,1,1,2:a", "3:4:b", "1,1:2,3:a",
            "2,2,2:0,1,0:b"]


def _ts(tmp_path, lines: list[str], name: str = "toy.ts", header: str = HEADER):
    path = tmp_path / name
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def test_read_ts(tmp_path) -> None:
    x, y, classes = read_ts(_ts(tmp_path, EXAMPLES))
    assert classes == ["a", "b"] and y == ["a", "b", "a", "b", "a", "b"]
    assert [a.shape for a in x] == [(3, 2), (2, 2), (4, 2), (1, 2), (2, 2), (3, 2)]
    np.testing.assert_array_equal(x[0], [[1, 4], [2, 5], [3, 6]])  # (timesteps, channels)


@pytest.mark.parametrize(("line", "match"), [
    ("1,?,3:4,5,6:a", "line 8 has a missing value '\\?'"),
    ("1,nan,3:4,5,6:a", "line 8 has a non-finite value 'nan'"),
    ("1,2,3:4,5:a", "line 8 has channels of different lengths"),
    ("1,2,3:a", "line 8 has 1 channel\\(s\\), @dimensions says 2"),
    ("1,2:3,4:c", "line 8: label 'c' is not one of @classLabel a b"),
    ("1,x:3,4:a", "line 8: 'x' is not a number"),
    ("(0,1),(1,2):(0,3),(1,4):a", "time-stamped"),
])
def test_read_ts_refusals_name_the_line(tmp_path, line, match) -> None:
    with pytest.raises(DataError, match=match) as info:
        read_ts(_ts(tmp_path, [line]))
    assert "\n" not in str(info.value)


def test_read_ts_needs_data(tmp_path) -> None:
    with pytest.raises(DataError, match="no @data"):
        read_ts(_ts(tmp_path, [], header="@dimensions 2\n"))
    with pytest.raises(DataError, match="no examples"):
        read_ts(_ts(tmp_path, []))
    with pytest.raises(DataError, match="neither a # comment nor an @ header"):
        read_ts(_ts(tmp_path, [], header="hello\n@data\n"))


def _japanese_vowels():
    cls = DATASETS.get("japanese_vowels")
    reason = data_file_reason(cls)
    if reason:
        pytest.skip(reason)
    return DATASETS.build({"name": "japanese_vowels"}).load()


def test_japanese_vowels_official_split() -> None:
    corpus = _japanese_vowels()
    assert corpus.kind == "sequences" and (corpus.n_train, corpus.n_val, corpus.dim) == (270,
                                                                                        370, 12)
    assert corpus.classes == tuple("123456789")
    assert set(corpus.class_counts("train").values()) == {30}
    val = corpus.class_counts("val")
    assert min(val.values()) == 24 and max(val.values()) == 88
    assert max(val.values()) / corpus.n_val == pytest.approx(0.238, abs=1e-3)
    lengths = [len(x) for x in corpus.train + corpus.val]
    assert (min(lengths), max(lengths)) == (7, 29)
    # Standardisation statistics are the training frames' (stored in the metadata too).
    frames = np.concatenate(corpus.train)
    np.testing.assert_allclose(corpus.mean, frames.mean(axis=0))
    np.testing.assert_allclose(corpus.std, frames.std(axis=0))
    assert corpus.metadata["feature_mean"] == corpus.mean.tolist()
    scaled = np.concatenate([corpus.scale(x) for x in corpus.train])
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-12)
    assert not np.allclose(np.concatenate([corpus.scale(x) for x in corpus.val]).mean(axis=0), 0,
                           atol=1e-3)


def test_sequences_feed_batches() -> None:
    corpus = _japanese_vowels()
    feed = FEEDS.build({"name": "sequences"}, corpus=corpus, batch_size=32, seq_len=1, seed=3,
                       dtype="float32")
    assert feed.steps_per_epoch == 9
    b = feed.batch(11)
    again = feed.batch(11)  # a pure function of the step
    np.testing.assert_array_equal(b.inputs, again.inputs)
    assert b.inputs.dtype == np.float32 and b.inputs.shape == (int(b.lengths.max()), 32, 12)
    idx = feed.indices(11)
    for col, j in enumerate(idx):
        n = len(corpus.train[j])
        assert b.lengths[col] == n and b.labels[col] == corpus.train_labels[j]
        np.testing.assert_allclose(b.inputs[:n, col], corpus.scale(corpus.train[j]), rtol=1e-6)
        assert not b.inputs[n:, col].any()  # zero padding after the end
    # reverse_padded (the backward stack's input) works on dense batches.
    rev = reverse_padded(b.inputs, b.lengths)
    n0 = int(b.lengths[0])
    np.testing.assert_array_equal(rev[:n0, 0], b.inputs[:n0, 0][::-1])
    val = list(feed.val_batches())
    assert sum(v.size for v in val) == 370
    np.testing.assert_array_equal(np.concatenate([v.labels for v in val]), corpus.val_labels)


def test_sequences_feed_refuses_other_corpora() -> None:
    from framework.data.corpora.labelled import labelled_corpus

    texts = labelled_corpus("texts", ["ab", "cd", "ef"], ["x", "y", "x"], val_fraction=0.0)
    with pytest.raises(ConfigError, match="feed 'sequences' needs a dataset of kind sequences"):
        FEEDS.build({"name": "sequences"}, corpus=texts, batch_size=1, seq_len=1, seed=0)


# ------------------------------------------------------------------ the user's own sequences
def _user(path, **options):
    return DATASETS.build({"name": "labelled_sequences", "path": str(path), **options}).load()


def test_user_ts_with_a_held_out_fraction(tmp_path) -> None:
    corpus = _user(_ts(tmp_path, EXAMPLES), val_fraction=0.34, split_seed=1)
    assert corpus.n_train + corpus.n_val == 6 and corpus.n_val == 2
    assert corpus.classes == ("a", "b")
    again = _user(_ts(tmp_path, EXAMPLES), val_fraction=0.34, split_seed=1)
    assert [x.tolist() for x in again.val] == [x.tolist() for x in corpus.val]


def test_user_ts_with_a_test_file(tmp_path) -> None:
    corpus = _user(_ts(tmp_path, EXAMPLES), test_path=str(_ts(tmp_path, EXAMPLES[:2], "t.ts")))
    assert (corpus.n_train, corpus.n_val) == (6, 2)


def test_user_csv_frames(tmp_path) -> None:
    path = tmp_path / "frames.csv"
    rows = ["sequence,label,f1,f2"]
    for k, ex in enumerate(EXAMPLES):
        first, second, label = ex.split(":")
        rows += [f"s{k},{label},{u},{v}"
                 for u, v in zip(first.split(","), second.split(","), strict=True)]
    path.write_text("\n".join(rows) + "\n")
    corpus = _user(path, val_fraction=0.0)
    expected, _, _ = read_ts(_ts(tmp_path, EXAMPLES))
    assert corpus.features == ("f1", "f2")
    for got, want in zip(corpus.train, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    path.write_text("sequence,label,f1\ns1,a,1\ns1,b,2\n")
    with pytest.raises(DataError, match="line 3: sequence 's1' has label 'b' here"):
        _user(path)
    path.write_text("sequence,label,f1\ns1,a,1\ns2,b,NA\n")
    with pytest.raises(DataError, match="line 3: 'NA' is not a number"):
        _user(path)


def test_user_npz(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5, 3))
    path = tmp_path / "seqs.npz"
    np.savez(path, x=x, labels=np.array(["u", "v"] * 3), lengths=np.array([5, 1, 2, 3, 4, 5]))
    corpus = _user(path, val_fraction=0.0)
    assert [len(a) for a in corpus.train] == [5, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(corpus.train[2], x[2, :2])
    x[1, 0, 0] = np.nan
    np.savez(path, x=x, labels=np.array(["u", "v"] * 3))
    with pytest.raises(DataError, match="training sequence 2 contains NaN"):
        _user(path, val_fraction=0.0)
    np.savez(path, x=x, labels=np.array([{"a": 1}] * 6, dtype=object))
    with pytest.raises(DataError, match="without pickle"):
        _user(path)
    np.savez(path, y=x)
    with pytest.raises(DataError, match="no array 'x'"):
        _user(path)


def test_user_route_refusals(tmp_path) -> None:
    with pytest.raises(ConfigError, match="set dataset.path"):
        DATASETS.build({"name": "labelled_sequences"})
    other = tmp_path / "x.json"
    other.write_text("{}")
    with pytest.raises(DataError, match="not a .ts, .csv or .npz"):
        _user(other)
    with pytest.raises(DataError, match="constant over the training frames"):
        _user(_ts(tmp_path, ["1,1:2,3:a", "1,1:5,3:b"]), val_fraction=0.0)
    with pytest.raises(DataError, match="fewer than 2 classes"):
        _user(_ts(tmp_path, ["1,2:2,3:a", "1,4:5,3:a"]), val_fraction=0.0)


def test_check_sequence_at_prediction_time() -> None:
    assert check_sequence([[1, 2], [3, 4]], "x", 2).shape == (2, 2)
    assert check_sequence([1.0, 2.0, 3.0], "x", 1).shape == (3, 1)
    with pytest.raises(DataError, match="has 3 features per step, the model reads 2"):
        check_sequence(np.ones((4, 3)), "the sequence", 2)
    with pytest.raises(DataError, match="not an array of numbers"):
        check_sequence([["a", "b"]], "x", 2)
    with pytest.raises(DataError, match="NaN"):
        check_sequence([[1.0, np.nan]], "x", 2)


def test_split_is_seeded_and_keeps_order() -> None:
    xs = [np.full((2, 1), float(k)) for k in range(10)]
    ys = [str(k % 2) for k in range(10)]
    a = split_sequences("s", xs, ys, val_fraction=0.3, split_seed=4)
    b = split_sequences("s", xs, ys, val_fraction=0.3, split_seed=4)
    assert [x[0, 0] for x in a.val] == [x[0, 0] for x in b.val] == sorted(x[0, 0] for x in a.val)
    assert a.n_val == 3
