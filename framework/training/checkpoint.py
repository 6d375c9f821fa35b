"""Checkpoints: one ``.npz`` file per checkpoint, written atomically, loaded without pickle.

File layout
-----------
A checkpoint is a plain NumPy ``.npz`` (zip of ``.npy`` members, written by ``np.savez`` with
``allow_pickle=False``).  Besides the arrays it holds one member ``__meta__``: the UTF-8 bytes of a
JSON object stored as a ``uint8`` array, so arrays and metadata live in one file that is replaced
in a single ``os.replace`` (never half-updated).

Array names (prefixes)
    ``param/<name>``   model parameters, e.g. ``param/layers.0.W_x`` (CharRNN.params keys)
    ``optim/<name>``   optimizer state_dict() entries (scalars as 0-d arrays)
    ``state/<layer>/<k>``  carried hidden state, entry ``k`` of layer ``layer`` (h, or h and c)
Object arrays are refused on save and on load (rnnlab never unpickles anything).

Metadata (``__meta__``, JSON)
    format_version  int, == FORMAT_VERSION (1); other versions are refused
    cell            str, registered cell name, e.g. "lstm"
    model           {"hidden_size": int, "num_layers": int, "dropout": float, "init": str,
                     "dtype": "float32"|"float64", "cell_options": {…cell schema options…}}
    vocab           Vocab.to_json() of the training vocabulary
    step            int, optimizer steps completed
    dataset         str, dataset name
    optimizer       str, optimizer name
    config          dict, the resolved training config (for humans and for resume checks)
    created         str, ISO-8601 UTC time (added by save_checkpoint when missing)
Other keys (e.g. rng state, best validation loss) are allowed and preserved.  :func:`make_meta`
builds the required part; :func:`build_model_from_checkpoint` turns a checkpoint back into a
``(CharRNN, Vocab)`` pair.

Rolling directory
-----------------
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
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import CheckpointError, RnnlabError, StorageError

FORMAT_VERSION = 1
META_KEY = "__meta__"
PARAM_PREFIX = "param/"
OPTIM_PREFIX = "optim/"
STATE_PREFIX = "state/"
REQUIRED_META = ("format_version", "cell", "model", "vocab", "step")
TMP_PREFIX = ".tmp-"
_STEP_RE = re.compile(r"^step_(\d+)\.npz$")
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


# --------------------------------------------------------------------------------------- writing
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


# --------------------------------------------------------------------------------------- loading
def _read_member(zf: zipfile.ZipFile, member: str, shown: str) -> np.ndarray:
    with zf.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if dtype.hasobject:
            raise CheckpointError(
                f"{shown}: array '{member[:-4]}' is an object array; refused "
                f"(rnnlab checkpoints hold numbers only and are never unpickled)"
            )
    with zf.open(member) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(arrays, meta)``.

    Never unpickles.  Every problem (missing file, directory, truncated or corrupt zip, not an npz,
    no metadata, unknown format version, object arrays) is a one-line :class:`CheckpointError`.
    """
    path = Path(path)
    shown = str(path)
    if path.is_dir():
        hint = (f"; did you mean {path / 'latest.npz'}?" if (path / "latest.npz").exists()
                else "; pass a .npz checkpoint file")
        raise CheckpointError(f"checkpoint {shown} is a directory{hint}")
    if not path.exists():
        raise CheckpointError(f"checkpoint {shown} not found; check the path")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {shown}: {exc.strerror or exc}") from None
    if magic not in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        raise CheckpointError(f"{shown} is not an .npz checkpoint (not a zip file)")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.endswith(".npy")]
            if f"{META_KEY}.npy" not in members:
                raise CheckpointError(
                    f"{shown} is not an rnnlab checkpoint (no {META_KEY} entry)"
                )
            for member in members:
                arrays[member[:-4]] = _read_member(zf, member, shown)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError,
            NotImplementedError) as exc:
        raise CheckpointError(
            f"checkpoint {shown} is truncated or corrupt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); use another checkpoint"
        ) from None
    meta = _decode_meta(arrays.pop(META_KEY), shown)
    return arrays, meta


def _decode_meta(raw: np.ndarray, shown: str) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{shown}: {META_KEY} must be a 1-D uint8 array")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{shown}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{shown}: metadata must be a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{shown} has checkpoint format_version {version!r}, this rnnlab reads "
            f"{FORMAT_VERSION}; re-create the checkpoint with this version"
        )
    return meta


# ------------------------------------------------------------------------------ meta and arrays
def make_meta(*, cell: str, hidden_size: int, num_layers: int, dropout: float, init: str,
              dtype: str, cell_options: Mapping[str, Any] | None, vocab_json: Any, step: int,
              dataset: str, optimizer: str, config: Mapping[str, Any] | None = None,
              **extra: Any) -> dict[str, Any]:
    """Build checkpoint metadata with every field :func:`build_model_from_checkpoint` needs."""
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "cell": str(cell),
        "model": {
            "hidden_size": int(hidden_size),
            "num_layers": int(num_layers),
            "dropout": float(dropout),
            "init": str(init),
            "dtype": str(dtype),
            "cell_options": dict(cell_options or {}),
        },
        "vocab": vocab_json,
        "step": int(step),
        "dataset": str(dataset),
        "optimizer": str(optimizer),
        "config": dict(config or {}),
    }
    meta.update(extra)
    return meta


def with_prefix(prefix: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v for k, v in arrays.items()}


def strip_prefix(prefix: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays whose name starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def pack_state(state: Sequence[Sequence[np.ndarray]]) -> dict[str, np.ndarray]:
    """Model State (list of per-layer tuples) -> ``state/<layer>/<k>`` arrays."""
    return {f"{STATE_PREFIX}{i}/{k}": np.asarray(a) for i, layer in enumerate(state)
            for k, a in enumerate(layer)}


def unpack_state(arrays: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, ...]] | None:
    """Inverse of :func:`pack_state`; None when the checkpoint has no state."""
    items = strip_prefix(STATE_PREFIX, arrays)
    if not items:
        return None
    layers: dict[int, dict[int, np.ndarray]] = {}
    for key, arr in items.items():
        try:
            layer, k = (int(x) for x in key.split("/"))
        except ValueError:
            raise CheckpointError(f"bad state array name '{STATE_PREFIX}{key}'") from None
        layers.setdefault(layer, {})[k] = arr
    return [tuple(layers[i][k] for k in sorted(layers[i])) for i in sorted(layers)]


def _vocab_chars(vocab_json: Any) -> list[str] | None:
    data = vocab_json
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            return None
    if isinstance(data, dict) and isinstance(data.get("chars"), (list, tuple, str)):
        return list(data["chars"])
    return None


def check_compatible(meta: Mapping[str, Any], *, cell: str | None = None,
                     vocab_chars: Sequence[str] | None = None, hidden_size: int | None = None,
                     num_layers: int | None = None, dtype: str | None = None,
                     dataset: str | None = None) -> None:
    """Raise CheckpointError when the checkpoint does not fit the configured model.

    Only the arguments that are given are compared, so a caller checks what it knows.
    """
    model = meta.get("model") or {}
    fix = "use a checkpoint of the same model or change the config (or start a new run)"
    checks = [
        ("cell", meta.get("cell"), cell),
        ("hidden_size", model.get("hidden_size"), hidden_size),
        ("num_layers", model.get("num_layers"), num_layers),
        ("dtype", model.get("dtype"), dtype),
        ("dataset", meta.get("dataset"), dataset),
    ]
    for what, have, want in checks:
        if want is not None and have != want:
            raise CheckpointError(
                f"checkpoint is for {what} {have!r} but the config says {want!r}; {fix}"
            )
    if vocab_chars is not None:
        have_chars = _vocab_chars(meta.get("vocab"))
        if have_chars is None or list(have_chars) != list(vocab_chars):
            missing = sorted(set(vocab_chars) - set(have_chars or []))
            extra = sorted(set(have_chars or []) - set(vocab_chars))
            raise CheckpointError(
                f"checkpoint vocabulary differs from the dataset's ({len(have_chars or [])} vs "
                f"{len(vocab_chars)} chars; new {missing[:10]!r}, gone {extra[:10]!r}); {fix}"
            )


def build_model_from_checkpoint(arrays: Mapping[str, np.ndarray],
                                meta: Mapping[str, Any]) -> tuple[Any, Any]:
    """Rebuild ``(CharRNN, Vocab)`` from a loaded checkpoint, with its trained parameters.

    Parameter names and shapes are checked against a freshly built model of the same config, so a
    checkpoint that does not match its own metadata is a CheckpointError, not a NumPy traceback.
    """
    from framework.data.vocab import Vocab
    from framework.nn.stack import CharRNN
    from framework.plugins import load_plugins

    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint metadata lacks {', '.join(missing)}; cannot rebuild")
    load_plugins()
    try:
        vocab = Vocab.from_json(meta["vocab"])
    except RnnlabError as exc:
        raise CheckpointError(f"checkpoint vocabulary is unreadable: {exc}") from None
    m = meta["model"]
    try:
        model = CharRNN(
            cell=meta["cell"], vocab_size=vocab.size, hidden_size=int(m["hidden_size"]),
            num_layers=int(m.get("num_layers", 1)), dropout=float(m.get("dropout", 0.0)),
            init=str(m.get("init", "xavier")), dtype=str(m.get("dtype", "float32")),
            cell_options=dict(m.get("cell_options") or {}),
        )
        # Fresh parameters give the names and shapes this config must have; the init kind
        # decides the RNG type (the course init draws from a legacy RandomState).
        rng = (np.random.RandomState(0) if model.init == "course"
               else np.random.default_rng(0))
        expected = model.init_params(rng)
    except CheckpointError:
        raise
    except RnnlabError as exc:
        raise CheckpointError(f"checkpoint model config does not build a model: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint model config is invalid: {exc}") from None
    params = strip_prefix(PARAM_PREFIX, arrays)
    _check_params(params, expected, str(m.get("dtype", "float32")))
    model.params = {k: np.array(v) for k, v in params.items()}
    return model, vocab


def _check_params(params: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                  dtype: str) -> None:
    missing = sorted(set(expected) - set(params))
    unknown = sorted(set(params) - set(expected))
    if missing or unknown:
        raise CheckpointError(
            f"checkpoint parameters do not match the model (missing {missing[:5]}, "
            f"unexpected {unknown[:5]}); the checkpoint was written by another model version"
        )
    for k, ref in expected.items():
        if params[k].shape != ref.shape:
            raise CheckpointError(
                f"checkpoint parameter '{k}' has shape {params[k].shape}, the model expects "
                f"{ref.shape}"
            )
        if params[k].dtype != np.dtype(dtype):
            raise CheckpointError(
                f"checkpoint parameter '{k}' has dtype {params[k].dtype}, metadata says {dtype}"
            )
