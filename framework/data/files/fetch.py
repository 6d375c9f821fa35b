"""Dataset files: find a file (user path, data directory, or a pinned-sha256 download), read it.

A file is looked for in this order:

1. ``dataset.path`` -- the user's own file, used as is (no checksum: it is theirs to edit);
2. ``$RNNLAB_DATA_DIR/<file>`` -- a shared data directory; files of a known dataset are checked
   against the pinned sha256 so a stale or edited copy cannot silently change results;
3. the user cache ``$RNNLAB_CACHE_DIR`` (default ``~/.cache/rnnlab``), filled on first use by
   downloading from the dataset's pinned public URL.  The download goes to a temporary file in
   the cache directory, is verified, and only then renamed into place, so an interrupted or
   corrupted download never leaves a file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import stat
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from framework.errors import DataError

DATA_DIR_ENV = "RNNLAB_DATA_DIR"
CACHE_DIR_ENV = "RNNLAB_CACHE_DIR"
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before urllib gives up
# The largest dataset file rnnlab reads or downloads: a guard against filling the memory or the
# disk from a wrong path or URL (the biggest built-in dataset is about 1 MB).
MAX_DATA_BYTES = 256 * 2**20
MAX_DOWNLOAD_BYTES = MAX_DATA_BYTES  # the same limit, under its older name
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))
_warned: set[str] = set()


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


def too_big(size: int, what: str, fix: str) -> DataError:
    """The one size limit of dataset files, read or downloaded."""
    return DataError(f"{what} is larger than {MAX_DATA_BYTES // 2**20} MiB ({size:,} bytes "
                     f"or more); {fix}")


def check_regular_file(path: Path, fix: str) -> os.stat_result:
    """``os.stat`` of a file that may be read: a regular file within the size limit.

    Checked before opening: opening a FIFO blocks until a writer appears, and a device can
    stream without end.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"dataset file {path} does not exist; {fix}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a file")
        raise DataError(f"{path} is {kind}, not a regular file; {fix}")
    if info.st_size > MAX_DATA_BYTES:
        raise too_big(info.st_size, str(path), fix)
    return info


def _user_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    check_regular_file(p, "fix dataset.path")
    return p


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        print(f"rnnlab: warning: {text}", file=sys.stderr, flush=True)


def locate(source: Source | None, path: str | os.PathLike[str] | None = None) -> Path:
    """The file to read: ``path``, else ``$RNNLAB_DATA_DIR``, else the (download) cache."""
    if path is not None and str(path) != "":
        return _user_path(path)
    if source is None:
        raise DataError("this dataset has no default file; set dataset.path to a text file")
    data_dir = os.environ.get(DATA_DIR_ENV)
    looked = []
    if data_dir:
        d = Path(data_dir).expanduser()
        candidate = d / source.filename
        if not d.is_dir():
            # A fresh machine without the shared folder the README names: use the cache and
            # the pinned download instead, and say so once.
            looked.append(f"{DATA_DIR_ENV}={data_dir} (not a directory)")
            _warn_once(f"{DATA_DIR_ENV}={data_dir} is not a directory; using the download cache "
                       f"{cache_dir()} instead")
        elif candidate.is_file():
            return _verify(candidate, source, f"from {DATA_DIR_ENV}")
        else:
            looked.append(f"{candidate} (no such file)")
    cached = cache_dir() / source.filename
    if cached.is_file():
        return _verify(cached, source, "in the download cache; delete it to download it again")
    try:
        return download(source, cache_dir())
    except DataError as exc:
        if not looked:
            raise
        raise DataError(f"{source.filename} was not found in {', '.join(looked)} nor in the "
                        f"download cache {cache_dir()}, and {exc}") from None


def download(source: Source, directory: Path, *, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Fetch ``source.url`` into ``directory/source.filename`` if (and only if) its sha256 fits."""
    hint = f"set {DATA_DIR_ENV} or dataset.path to a local copy of {source.filename}"
    # A filename may name a subfolder ("names/Arabic.txt"); the temporary file goes beside the
    # final one so that the rename below stays within one directory.
    final = directory / source.filename
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part",
                                        dir=final.parent)
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
                    if size > MAX_DATA_BYTES:
                        raise too_big(size, f"the download of {source.url}", hint)
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
    check_regular_file(path, fix)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DATA_BYTES + 1)  # the file may have grown since it was checked
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    if len(raw) > MAX_DATA_BYTES:
        raise too_big(len(raw), str(path), fix)
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


def github_raw(repo: str, commit: str, path: str) -> str:
    """A pinned raw.githubusercontent.com URL, with the path URL-encoded (spaces -> %20)."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{quote(path)}"
