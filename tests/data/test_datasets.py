"""Dataset plugins: course counts, splits, vocabulary, and one-line errors for bad input."""

from __future__ import annotations

import hashlib
import os
import string
from pathlib import Path

import numpy as np
import pytest

from framework.data.corpora.text import lines_corpus, stream_corpus
from framework.data.files.fetch import read_text
from framework.data.vocab import Vocab
from framework.errors import ConfigError, DataError
from framework.plugins import load_folder
from framework.registry import DATASETS
from tests.conftest import load_dataset
from tests.helpers import builtin_names

REPO = Path(__file__).resolve().parents[2]
load_folder(REPO / "datasets")
load = load_dataset


@pytest.mark.parametrize(
    "name, n_chars, n_symbols, kind",
    [("dinos", 19909, 27, "lines"), ("sonnets", 94275, 38, "stream"),
     ("tinyshakespeare", 1115394, 65, "stream")],
)
def test_course_counts(name, n_chars, n_symbols, kind):
    corpus = load(name, val_fraction=0.0)
    assert (corpus.n_chars, corpus.vocab.size, corpus.kind) == (n_chars, n_symbols, kind)
    assert list(corpus.vocab.chars) == sorted(corpus.vocab.chars)
    if kind == "stream":
        assert len(corpus.train) == n_chars and len(corpus.val) == 0
        assert corpus.train.dtype == np.int64


def test_dinos_course_vocabulary_and_names(dinos):
    assert dinos.vocab.chars == ("\n", *string.ascii_lowercase)
    assert dinos.vocab.eos == "\n" and dinos.vocab.eos_id == 0
    assert len(dinos.train) == 1536 and dinos.val == []
    # val_fraction=0 keeps every name in file order (the course shuffles this list itself).
    assert dinos.vocab.decode(dinos.train[0]) == "aachenosaurus"
    assert dinos.vocab.decode(dinos.train[-1]) == "zuul"
    text = DATASETS.get("dinos")().locate().read_text().lower()  # RNNLAB_DATA_DIR's copy
    assert [dinos.vocab.decode(a) for a in dinos.train] == [s.strip() for s in text.split("\n")]


def test_lines_split_is_fixed_and_keeps_file_order(dinos):
    a, b = load("dinos"), load("dinos")  # default val_fraction 0.1
    names = [dinos.vocab.decode(x) for x in dinos.train]
    train = [a.vocab.decode(x) for x in a.train]
    val = [a.vocab.decode(x) for x in a.val]
    assert len(val) == round(1536 * 0.1) and len(train) + len(val) == 1536
    assert train == [b.vocab.decode(x) for x in b.train]
    assert val == [b.vocab.decode(x) for x in b.val]
    assert sorted(train + val) == sorted(names)
    assert _is_subsequence(train, names)
    assert _is_subsequence(val, names)
    other = load("dinos", split_seed=1)
    assert [other.vocab.decode(x) for x in other.val] != val
    assert a.vocab == dinos.vocab  # the vocabulary comes from the whole text


def _is_subsequence(part, whole):
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def test_stream_split_is_the_tail():
    whole = load("sonnets", val_fraction=0.0).train
    corpus = load("sonnets", val_fraction=0.1)
    assert len(corpus.val) == round(len(whole) * 0.1)
    np.testing.assert_array_equal(np.concatenate([corpus.train, corpus.val]), whole)


def test_vocab_json_round_trip(dinos):
    text = dinos.vocab.to_json()
    back = Vocab.from_json(text)
    assert back == dinos.vocab and back.eos_id == 0
    assert Vocab.from_json(dinos.vocab.to_dict()) == dinos.vocab
    odd = Vocab.from_text("é ü\u4e2d\n")
    assert Vocab.from_json(odd.to_json()) == odd and odd.eos is None
    with pytest.raises(DataError, match="malformed vocabulary"):
        Vocab.from_json("{not json")
    with pytest.raises(DataError, match="malformed vocabulary"):
        Vocab.from_json('{"format": "other"}')


def test_encode_names_unknown_characters(dinos):
    np.testing.assert_array_equal(dinos.vocab.encode("abz\n"), [1, 2, 26, 0])
    with pytest.raises(DataError, match="not in the vocabulary") as info:
        dinos.vocab.encode("Aq Q")
    message = str(info.value)
    assert "'A'" in message and "'Q'" in message and "' '" in message and "\n" not in message
    assert dinos.vocab.decode([-1, 20, 21, 0]) == "tu\n"


def test_schema_range_checks():
    with pytest.raises(ConfigError, match="val_fraction"):
        DATASETS.validate({"name": "dinos", "val_fraction": 1.0})
    with pytest.raises(ConfigError, match="val_fraction"):
        DATASETS.validate({"name": "sonnets", "val_fraction": -0.1})
    with pytest.raises(ConfigError, match="no default file; set dataset.path"):
        DATASETS.build({"name": "textfile"})
    with pytest.raises(ConfigError, match="no default file"):
        DATASETS.build({"name": "textfile", "path": "  "})
    with pytest.raises(ConfigError, match="mode"):
        DATASETS.validate({"name": "textfile", "path": "x.txt", "mode": "words"})
    with pytest.raises(ConfigError, match="val_fraction"):
        DATASETS.get("tinyshakespeare")(val_fraction=2.0)  # direct construction checks too


def textfile(path, **options):
    return DATASETS.build({"name": "textfile", "path": str(path), **options}).load()


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "is empty"),
        (b"abc\x00def", "NUL bytes"),
        (b"caf\xe9 au lait", "not UTF-8"),
        (b"a", "too little text"),
        (b"aaaaaaaa", "one distinct character"),
    ],
)
def test_bad_text_files(tmp_path, content, match):
    path = tmp_path / "data.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        textfile(path)
    assert "\n" not in str(info.value)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist; fix dataset.path"):
        textfile(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is a directory"):
        textfile(tmp_path)
    with pytest.raises(DataError, match="is a directory"):
        read_text(tmp_path)


def test_lines_with_too_little_text(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("\n  \n\n")
    with pytest.raises(DataError, match="no non-empty lines"):
        textfile(path, mode="lines")
    path.write_text("ab\n")
    with pytest.raises(DataError, match="lower dataset.val_fraction"):
        textfile(path, mode="lines", val_fraction=0.9)
    with pytest.raises(DataError, match="too little"):
        stream_corpus("x", "ab", val_fraction=0.5)


def test_textfile_modes(tmp_path):
    path = tmp_path / "names.txt"
    path.write_bytes(b"\xef\xbb\xbfAlpha\r\nBeta\r\n\r\nGamma\r\n")  # BOM + Windows endings
    corpus = textfile(path, mode="lines", lower=True, val_fraction=0.0)
    assert [corpus.vocab.decode(x) for x in corpus.train] == ["alpha", "beta", "gamma"]
    assert "\r" not in corpus.vocab.chars and corpus.vocab.eos == "\n"
    stream = textfile(path, val_fraction=0.0)
    assert stream.kind == "stream" and stream.vocab.decode(stream.train).startswith("Alpha\nBeta")
    assert lines_corpus("x", "ab", val_fraction=0.0).vocab.chars == ("\n", "a", "b")


def test_data_dir_copies_are_checksummed(tmp_path, monkeypatch):
    (tmp_path / "dinos.txt").write_text("Aachenosaurus\nEdited\n")
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="sha256") as info:  # the dataset's own check, not a skip
        DATASETS.build({"name": "dinos"}).load()
    assert "dataset.path" in str(info.value) and "\n" not in str(info.value)
    # The same edited file named by dataset.path is the user's own, and is not checked.
    corpus = load("dinos", path=str(tmp_path / "dinos.txt"), val_fraction=0.0)
    assert len(corpus.train) == 2
    # A data directory that does not exist falls through to the cache and the download (see
    # tests/test_fresh_clone.py); the error, if the download fails too, names both places.
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path / "missing-dir"))
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    with pytest.raises(DataError, match="missing-dir \\(not a directory\\)") as info:
        DATASETS.build({"name": "dinos"}).load()
    assert "download cache" in str(info.value) and "could not download" in str(info.value)


def _offline(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("offline")


def test_shared_data_matches_provenance():
    data_dir = Path(os.environ.get("RNNLAB_DATA_DIR", ""))
    if not (data_dir / "PROVENANCE.md").is_file():
        pytest.skip(f"RNNLAB_DATA_DIR={data_dir} holds no PROVENANCE.md")
    text = (data_dir / "PROVENANCE.md").read_text()
    pinned = [n for n in builtin_names(DATASETS)
              if getattr(DATASETS.get(n), "source", None) is not None]
    assert pinned
    for name in pinned:
        source = getattr(DATASETS.get(name), "source", None)
        assert source.sha256 in text
        digest = hashlib.sha256((data_dir / source.filename).read_bytes())
        assert digest.hexdigest() == source.sha256
