"""Bounded, pickle-free reading of ``.npz`` members whose shape and dtype are known in advance.

A checkpoint is untrusted input, memory included, so nothing here trusts a size the file states:

* the zip directory is located and measured by hand before :mod:`zipfile` reads it, so a file
  claiming millions of members (or a huge directory) is refused before it is parsed;
* a member's declared uncompressed size must fit what the caller expects before it is opened;
* its ``.npy`` header is parsed on the member stream (``numpy.lib.format``) and compared with the
  expected shape and dtype before any data is read (object arrays are refused, never unpickled);
* the data is read into an array of the expected size through a reader with a hard byte cap, so a
  member that inflates beyond its header is stopped at the cap (and then fails its CRC).

Every problem is a one-line :class:`~framework.errors.CheckpointError`.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from framework.errors import CheckpointError

# NumPy writes ~128-byte headers; anything far larger is not one of ours.
MAX_HEADER_BYTES = 16 * 1024
_PREAMBLE_BYTES = 8 + 4  # magic string and version, then a 2- or 4-byte header length
MAX_MEMBERS = 16_384
MAX_DIRECTORY_BYTES = 4 << 20
_CHUNK = 1 << 20
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, OSError,
            KeyError, NotImplementedError, struct.error, RecursionError, OverflowError,
            UnicodeDecodeError, TypeError)


@dataclass(frozen=True)
class Expect:
    """What one member must hold: its dtype and shape.

    A ``None`` entry in ``shape`` stands for any length from 1 to ``max_rows`` (the carried hidden
    state has as many rows as the batch it was saved after, which can be short).
    """

    dtype: np.dtype
    shape: tuple[int | None, ...]
    max_rows: int = 0

    @property
    def max_bytes(self) -> int:
        rows = (self.max_rows if n is None else n for n in self.shape)
        return math.prod(rows) * self.dtype.itemsize

    def shown(self) -> str:
        dims = ", ".join(f"<={self.max_rows}" if n is None else str(n) for n in self.shape)
        return f"({dims}{',' if len(self.shape) == 1 else ''}) {_dtype_name(self.dtype)}"

    def matches(self, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        if dtype != self.dtype or len(shape) != len(self.shape):
            return False
        return all((1 <= n <= self.max_rows) if want is None else n == want
                   for n, want in zip(shape, self.shape, strict=True))


def _dtype_name(dtype: np.dtype) -> str:
    if dtype.hasobject:
        return "object"
    # A non-native byte order has the same name ("float32"); show its code (">f4") too.
    return dtype.name if dtype.byteorder in "=|" else f"{dtype.name} ({dtype.str})"


def _shown_array(shape: tuple[int, ...], dtype: np.dtype) -> str:
    return f"{tuple(shape)} {_dtype_name(dtype)}"


class _Capped:
    """A read-only view of a stream that never returns more than ``limit`` bytes in total."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        left = self.limit - self.pos
        n = left if n is None or n < 0 else min(n, left)
        data = self.raw.read(n) if n > 0 else b""
        self.pos += len(data)
        return data


def regular_file(path: Path, shown: str) -> int:
    """Size of ``path``, refusing what is not a regular file (a FIFO would block a read forever)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {shown} not found; check the path") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {shown}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        hint = (f"; did you mean {path / 'latest.npz'}?" if (path / "latest.npz").exists()
                else "; pass a .npz checkpoint file")
        raise CheckpointError(f"checkpoint {shown} is a directory{hint}")
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"checkpoint {shown} is not a regular file (a FIFO, socket or "
                              f"device); pass a .npz checkpoint file")
    return info.st_size


def _directory_extent(fh: IO[bytes], size: int) -> tuple[int, int]:
    """``(entries, bytes)`` of the zip's central directory, read the way :mod:`zipfile` does."""
    tail_len = min(size, _EOCD.size + 0xFFFF)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail_len - _EOCD.size
    if at < 0 or tail[at:at + 4] != b"PK\x05\x06" or tail[-2:] != b"\0\0":
        at = tail.rfind(b"PK\x05\x06")  # a zip comment follows the record
    if at < 0 or at + _EOCD.size > tail_len:
        raise zipfile.BadZipFile("no end of central directory record")
    _, _, _, _, entries, dir_bytes, _, _ = _EOCD.unpack_from(tail, at)
    record = size - tail_len + at
    loc_at = record - _ZIP64_LOCATOR.size
    if loc_at >= _ZIP64_EOCD.size:
        fh.seek(loc_at)
        locator = fh.read(_ZIP64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            fh.seek(loc_at - _ZIP64_EOCD.size)
            z64 = fh.read(_ZIP64_EOCD.size)
            if len(z64) != _ZIP64_EOCD.size or z64[:4] != b"PK\x06\x06":
                raise zipfile.BadZipFile("corrupt zip64 end of central directory record")
            fields = _ZIP64_EOCD.unpack(z64)
            entries, dir_bytes = fields[7], fields[8]
    return entries, dir_bytes


class NpzReader:
    """An open ``.npz`` whose members are read only against an :class:`Expect`.

    Use as a context manager; :attr:`names` lists the member arrays (``.npy`` suffix removed).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.shown = str(path)
        self._fh: IO[bytes] | None = None
        self._zip: zipfile.ZipFile | None = None
        self.names: list[str] = []
        self._infos: dict[str, zipfile.ZipInfo] = {}

    def __enter__(self) -> NpzReader:
        size = regular_file(self.path, self.shown)
        try:
            self._fh = open(self.path, "rb")
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {self.shown}: "
                                  f"{exc.strerror or exc}") from None
        try:
            self._open(size)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._fh is not None:
            self._fh.close()
        self._zip = self._fh = None

    def corrupt(self, exc: BaseException) -> CheckpointError:
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        return CheckpointError(f"checkpoint {self.shown} is truncated or corrupt "
                               f"({type(exc).__name__}: {detail}); use another checkpoint")

    def _open(self, size: int) -> None:
        assert self._fh is not None
        try:
            magic = self._fh.read(4)
        except OSError as exc:  # /proc/self/mem is a "regular file" that no one can read
            raise CheckpointError(f"cannot read checkpoint {self.shown}: "
                                  f"{exc.strerror or exc}") from None
        if magic not in _ZIP_MAGIC:
            raise CheckpointError(f"{self.shown} is not an .npz checkpoint (not a zip file)")
        try:
            entries, dir_bytes = _directory_extent(self._fh, size)
            if entries > MAX_MEMBERS or dir_bytes > MAX_DIRECTORY_BYTES:
                raise CheckpointError(
                    f"checkpoint {self.shown} lists {entries} members in a {dir_bytes}-byte zip "
                    f"directory, more than any rnnlab checkpoint has (at most {MAX_MEMBERS}); "
                    f"it is not an rnnlab checkpoint")
            self._fh.seek(0)
            self._zip = zipfile.ZipFile(self._fh)
            infos = self._zip.infolist()
        except CheckpointError:
            raise
        except _CORRUPT as exc:
            raise self.corrupt(exc) from None
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or info.is_dir():
                raise CheckpointError(f"checkpoint {self.shown} has a member {name!r} that is not "
                                      f"an .npy array; it is not an rnnlab checkpoint")
            if name[:-4] in self._infos:
                raise CheckpointError(f"checkpoint {self.shown} holds member {name!r} twice; "
                                      f"it is not an rnnlab checkpoint")
            if info.flag_bits & 0x1:
                raise CheckpointError(f"checkpoint {self.shown}: member {name!r} is encrypted")
            self._infos[name[:-4]] = info
        self.names = list(self._infos)

    def read(self, name: str, expect: Expect, what: str,
             hint: str = "the file does not match its own metadata") -> np.ndarray:
        """Member ``name`` as an array, after its sizes and header matched ``expect``.

        ``what`` names the member in messages (e.g. "parameter 'out.W'"), ``hint`` ends the
        message when the header does not match.
        """
        out = self._member(name, expect, what, hint, data=True)
        assert out is not None
        return out

    def check(self, name: str, expect: Expect, what: str,
              hint: str = "the file does not match its own metadata") -> None:
        """The checks of :meth:`read` on sizes and header, without reading the data."""
        self._member(name, expect, what, hint, data=False)

    def _member(self, name: str, expect: Expect, what: str, hint: str,
                data: bool) -> np.ndarray | None:
        assert self._zip is not None
        info = self._infos[name]
        limit = expect.max_bytes
        if info.file_size > limit + _PREAMBLE_BYTES + MAX_HEADER_BYTES:
            raise CheckpointError(
                f"checkpoint {self.shown}: {what} declares {info.file_size} bytes uncompressed, "
                f"expected at most {limit} bytes of data {expect.shown()}; {hint}")
        try:
            with self._zip.open(info) as raw:
                fh = _Capped(raw, _PREAMBLE_BYTES + MAX_HEADER_BYTES)
                shape, fortran, dtype = self._header(fh, what)
                if dtype.hasobject:
                    raise CheckpointError(
                        f"checkpoint {self.shown}: {what} is an object array; refused (rnnlab "
                        f"checkpoints hold numbers only and are never unpickled)")
                if not expect.matches(shape, dtype):
                    raise CheckpointError(
                        f"checkpoint {self.shown}: {what} has shape "
                        f"{_shown_array(shape, dtype)}, expected {expect.shown()}; {hint}")
                nbytes = math.prod(shape) * dtype.itemsize
                if info.file_size != fh.pos + nbytes:
                    raise CheckpointError(
                        f"checkpoint {self.shown}: {what} holds {info.file_size - fh.pos} data "
                        f"bytes but its header declares {nbytes}; the file is damaged")
                if not data:
                    return None
                fh.limit = fh.pos + nbytes
                out = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
                self._fill(fh, out, what)
                if raw.read(1):  # zipfile stops at the declared size; this also checks the CRC
                    raise CheckpointError(f"checkpoint {self.shown}: {what} is longer than its "
                                          f"header says; the file is damaged")
        except CheckpointError:
            raise
        except MemoryError:
            raise CheckpointError(f"not enough memory to load {what} of checkpoint "
                                  f"{self.shown} ({expect.shown()})") from None
        except _CORRUPT as exc:
            raise self.corrupt(exc) from None
        return out.T if fortran else out

    def _header(self, fh: _Capped, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh, max_header_size=MAX_HEADER_BYTES)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fh, max_header_size=MAX_HEADER_BYTES)
        raise CheckpointError(f"checkpoint {self.shown}: {what} uses .npy format version "
                              f"{version[0]}.{version[1]}; rnnlab writes 1.0")

    def _fill(self, fh: _Capped, out: np.ndarray, what: str) -> None:
        view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
        done = 0
        while done < len(view):
            chunk = fh.read(min(_CHUNK, len(view) - done))
            if not chunk:
                raise CheckpointError(f"checkpoint {self.shown}: {what} ends after {done} of "
                                      f"{len(view)} bytes; the file is truncated")
            view[done:done + len(chunk)] = chunk
            done += len(chunk)


__all__ = ["MAX_HEADER_BYTES", "MAX_MEMBERS", "Expect", "NpzReader", "regular_file"]

