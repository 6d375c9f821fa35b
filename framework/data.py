"""Dataset files and corpora: find (or download) a text file, check it, split it, encode it.

A file is looked for in this order:

1. ``dataset.path`` -- the user's own file, used as is (no checksum: it is theirs to edit);
2. ``$RNNLAB_DATA_DIR/<file>`` -- a shared data directory; files of a known dataset are checked
   against the pinned sha256 so a stale or edited copy cannot silently change results;
3. the user cache ``$RNNLAB_CACHE_DIR`` (default ``~/.cache/rnnlab``), filled on first use by
   downloading from the dataset's pinned public URL.  The download goes to a temporary file in
   the cache directory, is verified, and only then renamed into place, so an interrupted or
   corrupted download never leaves a file that a later run would trust.

Dataset plugins subclass :class:`TextDataset` and only declare their schema, source and defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import numpy as np

from framework.errors import ConfigError, DataError
from framework.vocab import Vocab

DATA_DIR_ENV = "RNNLAB_DATA_DIR"
CACHE_DIR_ENV = "RNNLAB_CACHE_DIR"
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before urllib gives up
MAX_DOWNLOAD_BYTES = 256 * 2**20  # a guard against filling the disk from a wrong URL
KINDS = ("lines", "stream")


@dataclass(frozen=True)
class Source:
    """Where a known dataset file comes from: its file name, public URL and sha256."""

    filename: str
    url: str
    sha256: str


# ------------------------------------------------------------------------------ locating files


def cache_dir() -> Path:
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rnnlab"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, source: Source, where: str) -> Path:
    actual = sha256_of(path)
    if actual != source.sha256:
        raise DataError(
            f"{path} ({where}) has sha256 {actual[:12]}..., expected {source.sha256[:12]}... "
            f"for {source.filename}; replace it with the original file, or pass your edited copy "
            f"as dataset.path (which is not checked)"
        )
    return path


def _user_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"dataset file {p} does not exist; fix dataset.path")
    if p.is_dir():
        raise DataError(f"dataset.path {p} is a directory; point it at a text file")
    return p


def locate(source: Source | None, path: str | os.PathLike[str] | None = None) -> Path:
    """The file to read: ``path``, else ``$RNNLAB_DATA_DIR``, else the (download) cache."""
    if path is not None and str(path) != "":
        return _user_path(path)
    if source is None:
        raise DataError("this dataset has no default file; set dataset.path to a text file")
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        d = Path(data_dir).expanduser()
        if not d.is_dir():
            raise DataError(f"{DATA_DIR_ENV}={data_dir} is not a directory; fix or unset it")
        candidate = d / source.filename
        if candidate.is_file():
            return _verify(candidate, source, f"from {DATA_DIR_ENV}")
    cached = cache_dir() / source.filename
    if cached.is_file():
        return _verify(cached, source, "in the download cache; delete it to download it again")
    return download(source, cache_dir())


def download(source: Source, directory: Path, *, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Fetch ``source.url`` into ``directory/source.filename`` if (and only if) its sha256 fits."""
    hint = f"set {DATA_DIR_ENV} or dataset.path to a local copy of {source.filename}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{source.filename}.", suffix=".part",
                                        dir=directory)
    except OSError as exc:
        raise DataError(f"cannot write to the cache directory {directory} ({exc}); "
                        f"set {CACHE_DIR_ENV} to a writable directory or {hint}") from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(source.url, headers={"User-Agent": "rnnlab"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                for block in iter(lambda: response.read(1 << 16), b""):
                    size += len(block)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise DataError(f"download of {source.url} exceeds "
                                        f"{MAX_DOWNLOAD_BYTES} bytes; {hint}")
                    digest.update(block)
                    out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != source.sha256:
            raise DataError(
                f"downloaded {source.filename} from {source.url} has sha256 "
                f"{digest.hexdigest()[:12]}..., expected {source.sha256[:12]}... (the source "
                f"changed or the download was corrupted); nothing was saved; {hint}"
            )
        final = directory / source.filename
        os.replace(tmp, final)  # atomic: readers see no file or the whole verified file
        return final
    except DataError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"could not download {source.filename} from {source.url} "
                        f"({reason}); {hint}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# ------------------------------------------------------------------------------ reading text


def read_text(path: Path, *, lower: bool = False) -> str:
    """Decode a UTF-8 text file, rejecting empty, binary and non-UTF-8 files with a clear fix."""
    fix = "point dataset.path at a UTF-8 text file"
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path} is a directory; {fix}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    if not raw:
        raise DataError(f"{path} is empty; {fix} with some training text")
    if b"\x00" in raw:
        raise DataError(f"{path} looks binary (it contains NUL bytes); {fix}")
    try:
        text = raw.decode("utf-8-sig")  # -sig: drop a byte-order mark some editors write
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start}); "
                        f"re-save it as UTF-8") from None
    # Windows line endings would otherwise add "\r" to the vocabulary and to every name.
    text = text.replace("\r\n", "\n")
    return text.lower() if lower else text


# ------------------------------------------------------------------------------ corpora


@dataclass
class Corpus:
    """An encoded, split dataset.

    ``kind == "lines"``: ``train``/``val`` are lists of int64 arrays, one per example, without the
    end-of-example id (``vocab.eos_id``).  ``kind == "stream"``: they are 1-D int64 arrays.
    """

    name: str
    kind: str
    vocab: Vocab
    train: Any
    val: Any
    n_chars: int
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_val(self) -> int:
        return len(self.val)


def _too_little(path: Path | str, what: str) -> DataError:
    return DataError(f"{path} has too little text to train on ({what}); use a longer file")


def _held_out(n: int, val_fraction: float, split_seed: int) -> np.ndarray:
    """Sorted indices of the validation examples: a fixed-seed subset, independent of the run."""
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if n_val == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(split_seed).permutation(n)[:n_val])


def lines_corpus(name: str, text: str, *, val_fraction: float, split_seed: int = 0,
                 source: str = "") -> Corpus:
    """One example per line (stripped, empty lines dropped), ``"\\n"`` ends each example."""
    examples = [line.strip() for line in text.split("\n")]
    examples = [e for e in examples if e]
    if not examples:
        raise _too_little(source, "no non-empty lines")
    vocab = Vocab.from_text(text, eos="\n")
    if vocab.size < 2:
        raise _too_little(source, "only one distinct character")
    val_idx = _held_out(len(examples), val_fraction, split_seed)
    if len(val_idx) >= len(examples):
        raise _too_little(source, f"{len(examples)} line(s) leave nothing to train on with "
                                  f"val_fraction={val_fraction}; lower dataset.val_fraction")
    is_val = np.zeros(len(examples), dtype=bool)
    is_val[val_idx] = True
    encoded = [vocab.encode(e) for e in examples]  # original file order is kept in both splits
    return Corpus(
        name=name, kind="lines", vocab=vocab,
        train=[a for a, v in zip(encoded, is_val, strict=True) if not v],
        val=[a for a, v in zip(encoded, is_val, strict=True) if v],
        n_chars=len(text), source=source,
        metadata={"n_examples": len(examples), "val_fraction": val_fraction,
                  "split_seed": split_seed},
    )


def token_lines_corpus(name: str, examples: Sequence[Sequence[str]], *, eos: str,
                       val_fraction: float, split_seed: int = 0, source: str = "",
                       metadata: dict[str, Any] | None = None) -> Corpus:
    """One example per token sequence (a piece of music, ...), ``eos`` ends each example.

    The token counterpart of :func:`lines_corpus`: the vocabulary is ``sorted(set(tokens))`` plus
    ``eos``, and the validation set is a fixed-seed subset of whole examples, in input order.
    """
    examples = [list(e) for e in examples if len(e)]
    if not examples:
        raise _too_little(source, "no non-empty examples")
    vocab = Vocab.from_tokens((t for e in examples for t in e), eos=eos)
    if vocab.size < 2:
        raise _too_little(source, "only one distinct token")
    val_idx = _held_out(len(examples), val_fraction, split_seed)
    if len(val_idx) >= len(examples):
        raise _too_little(source, f"{len(examples)} example(s) leave nothing to train on with "
                                  f"val_fraction={val_fraction}; lower dataset.val_fraction")
    is_val = np.zeros(len(examples), dtype=bool)
    is_val[val_idx] = True
    encoded = [vocab.encode(e) for e in examples]
    return Corpus(
        name=name, kind="lines", vocab=vocab,
        train=[a for a, v in zip(encoded, is_val, strict=True) if not v],
        val=[a for a, v in zip(encoded, is_val, strict=True) if v],
        n_chars=sum(len(e) for e in examples), source=source,
        metadata={"n_examples": len(examples), "val_fraction": val_fraction,
                  "split_seed": split_seed, **(metadata or {})},
    )


def stream_corpus(name: str, text: str, *, val_fraction: float, source: str = "") -> Corpus:
    """Continuous text; the validation split is the last ``val_fraction`` of it."""
    vocab = Vocab.from_text(text)
    if vocab.size < 2:
        raise _too_little(source, f"only one distinct character {vocab.chars[0]!r}")
    ids = vocab.encode(text)
    n_val = int(round(len(ids) * val_fraction))
    n_train = len(ids) - n_val
    if n_train < 2:
        raise _too_little(source, f"{n_train} training character(s); need at least 2")
    return Corpus(
        name=name, kind="stream", vocab=vocab, train=ids[:n_train], val=ids[n_train:],
        n_chars=len(text), source=source, metadata={"val_fraction": val_fraction},
    )


# ------------------------------------------------------------------------------ plugin base


def check_common(val_fraction: float, split_seed: int = 0) -> None:
    """Range checks shared by dataset schemas (raise ValueError, as schemas must)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if split_seed < 0:
        raise ValueError(f"split_seed must be >= 0, got {split_seed}")


class TextDataset:
    """Base of the text dataset plugins: ``__init__(**schema fields)``, ``load() -> Corpus``.

    Subclasses set ``schema`` (their config dataclass), ``source`` (a :class:`Source` or ``None``)
    and ``kind`` (used when the schema has no ``mode`` field).
    """

    schema: ClassVar[type]
    source: ClassVar[Source | None] = None
    kind: ClassVar[str] = "stream"

    def __init__(self, **options: Any) -> None:
        try:
            self.config = self.schema(**options)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"dataset '{self.schema.name}': {exc}") from None
        # Checked here rather than in the schema so that every schema has usable defaults.
        if self.source is None and not str(self.config.path or "").strip():
            raise ConfigError(f"dataset '{self.config.name}' has no default file; "
                              f"set dataset.path=/path/to/your.txt")

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def mode(self) -> str:
        return getattr(self.config, "mode", self.kind)

    def locate(self) -> Path:
        return locate(self.source, self.config.path)

    def load(self) -> Corpus:
        path = self.locate()
        text = read_text(path, lower=bool(getattr(self.config, "lower", False)))
        if self.mode == "lines":
            return lines_corpus(self.name, text, val_fraction=self.config.val_fraction,
                                split_seed=getattr(self.config, "split_seed", 0),
                                source=str(path))
        return stream_corpus(self.name, text, val_fraction=self.config.val_fraction,
                             source=str(path))


def github_raw(repo: str, commit: str, path: str) -> str:
    """A pinned raw.githubusercontent.com URL, with the path URL-encoded (spaces -> %20)."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{quote(path)}"


__all__ = [
    "CACHE_DIR_ENV", "DATA_DIR_ENV", "Corpus", "Source", "TextDataset", "cache_dir",
    "check_common", "download", "github_raw", "lines_corpus", "locate", "read_text",
    "sha256_of", "stream_corpus", "token_lines_corpus",
]
