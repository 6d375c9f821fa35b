"""Checkpoint files: the ``.npz`` format, atomic writing and the rolling directory of a run.

A checkpoint is a plain NumPy ``.npz`` (zip of ``.npy`` members, written by ``np.savez`` with
``allow_pickle=False``).  Besides the arrays it holds one member ``__meta__``: the UTF-8 bytes of a
JSON object stored as a ``uint8`` array, so arrays and metadata live in one file that is replaced
in a single ``os.replace`` (never half-updated).

:func:`save_rolling` writes ``<dir>/step_000123.npz`` and then points ``<dir>/latest.npz`` (and
``best.npz`` when asked) at it through a hard link swapped in with ``os.replace``, so a reader of
``latest.npz`` always sees a complete checkpoint even if the writer is killed at any moment.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import CheckpointError, StorageError

FORMAT_VERSION = 1
META_KEY = "__meta__"
PARAM_PREFIX = "param/"
OPTIM_PREFIX = "optim/"
STATE_PREFIX = "state/"
# Early stopping's second parameter set: the best eval's while training, the last step's once the
# best was restored into ``param/`` (the checkpoint's ``early_stop.restored`` says which).
KEPT_PREFIX = "kept/"
TMP_PREFIX = ".tmp-"
_STEP_RE = re.compile(r"^step_(\d+)\.npz$")


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems do not support fsync on directories
    finally:
        os.close(fd)


def _check_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or name == META_KEY:
            raise CheckpointError(f"invalid checkpoint array name {name!r}")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise CheckpointError(
                f"checkpoint array '{name}' has dtype object; only numeric arrays can be saved"
            )
        out[name] = arr
    return out


def _encode_meta(meta: Mapping[str, Any]) -> np.ndarray:
    try:
        text = json.dumps(meta, sort_keys=True, allow_nan=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {exc}") from None
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _json_default(value: Any) -> Any:
    # NumPy scalars and paths show up in configs; store them as plain JSON values.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_checkpoint(path: str | os.PathLike[str], arrays: Mapping[str, Any],
                    meta: Mapping[str, Any]) -> Path:
    """Write ``arrays`` and ``meta`` to ``path`` (an ``.npz``) atomically; returns the path.

    The data goes to a temporary file in the same directory, is flushed and fsync'ed, then renamed
    over ``path`` and the directory fsync'ed: a crash leaves either the old file or the new one.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise CheckpointError(f"checkpoint path must end in .npz, got {path}")
    checked = _check_arrays(arrays)
    full_meta = dict(meta)
    full_meta.setdefault("format_version", FORMAT_VERSION)
    full_meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat())
    checked[META_KEY] = _encode_meta(full_meta)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".npz", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, allow_pickle=False, **checked)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise
    _fsync_dir(path.parent)
    return path


def _write_error(path: Path, exc: OSError) -> StorageError:
    """A failed checkpoint write (disk full, read-only, no permission) as one line."""
    # Everything is written to a temp file and renamed into place, so a failed write replaced
    # nothing: the checkpoints that were there before are still whole.
    return StorageError.from_os_error(
        "write checkpoint", path, exc,
        f"nothing was replaced, the checkpoints already in {path.parent} are intact; free some "
        f"space or make the folder writable, or write the run elsewhere (hydra.run.dir=...)")


def _link_atomically(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source`` (hard link, or a copy) via temp + rename."""
    tmp = target.parent / f"{TMP_PREFIX}{target.name}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        try:
            os.link(source, tmp)
        except OSError:
            # No hard links here (some network/overlay filesystems): fall back to a durable copy.
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):  # a half-written copy (disk full) is not left behind
            tmp.unlink()
        raise


def step_path(directory: str | os.PathLike[str], step: int) -> Path:
    return Path(directory) / f"step_{int(step):06d}.npz"


def save_rolling(directory: str | os.PathLike[str], step: int, arrays: Mapping[str, Any],
                 meta: Mapping[str, Any], *, best: bool = False,
                 keep_last: int | None = None) -> Path:
    """Save ``step_<step>.npz`` in ``directory``, point ``latest.npz`` (and ``best.npz`` when
    ``best``) at it, and delete all but the ``keep_last`` newest step files (None keeps all).

    ``latest.npz``/``best.npz`` are hard links, so pruning step files never breaks them.
    Returns the step file's path.
    """
    directory = Path(directory)
    target = save_checkpoint(step_path(directory, step), arrays, meta)
    for name in ("latest.npz", "best.npz") if best else ("latest.npz",):
        try:
            _link_atomically(target, directory / name)
        except OSError as exc:
            raise _write_error(directory / name, exc) from None
    _fsync_dir(directory)
    if keep_last is not None and keep_last > 0:
        for old in list_step_checkpoints(directory)[:-keep_last]:
            if old != target:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
    return target


def list_step_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """``step_*.npz`` files of ``directory`` sorted by step (oldest first)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> int:
    """Delete temp files left by a writer that was killed mid-save; returns how many.

    Call only when no other process is writing checkpoints to ``directory``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    count = 0
    for p in directory.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            p.unlink()
            count += 1
    return count




def decode_meta(raw: np.ndarray, shown: str) -> Any:
    """The JSON object of a ``__meta__`` member's bytes; bad bytes are one line."""
    try:
        return json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{shown}: metadata is not valid JSON ({detail})") from None


__all__ = ["FORMAT_VERSION", "KEPT_PREFIX", "META_KEY", "OPTIM_PREFIX", "PARAM_PREFIX",
           "STATE_PREFIX", "TMP_PREFIX", "decode_meta", "list_step_checkpoints",
           "remove_stale_temp_files", "save_checkpoint", "save_rolling", "step_path"]
