"""Checkpoints: the one module that writes, reads, checks and finds rnnlab's ``.npz`` checkpoints.

File layout
-----------
A checkpoint is a plain NumPy ``.npz`` (zip of ``.npy`` members, written by ``np.savez`` with
``allow_pickle=False``).  Besides the arrays it holds one member ``__meta__``: the UTF-8 bytes of a
JSON object stored as a ``uint8`` array, so arrays and metadata live in one file that is replaced
in a single ``os.replace`` (never half-updated).

Array names (prefixes)
    ``param/<name>``   model parameters, e.g. ``param/layers.0.W_x`` (CharRNN.params keys)
    ``optim/<name>``   optimizer state_dict() entries: ``t`` (0-d int64) and ``<slot>.<param>``
    ``state/<layer>/<k>``  carried hidden state, entry ``k`` of layer ``layer`` (h, or h and c)

Metadata (``__meta__``, JSON; every field is checked on load, unknown fields are refused)
    format_version  int, == FORMAT_VERSION; other versions are refused
    cell            str, a registered cell name, e.g. "lstm"
    model           {"hidden_size": int, "num_layers": int, "dropout": float, "init": str,
                     "dtype": "float32"|"float64", "cell_options": {…the cell's schema options…}}
    vocab           Vocab.to_json() of the training vocabulary
    step            int >= 0, optimizer steps completed
    smooth_loss     float or null, the smoothed training loss (resume needs it)
    best_val_loss   float or null, the best validation loss so far
    dataset, optimizer, corpus_kind   str (optional)
    generate        {"window": int or null} (optional)
    config          dict, the resolved training config (resume compares it with the new one)
    created         str, ISO-8601 UTC time (added by save_checkpoint when missing)

Loading treats the file as untrusted input, memory included: the metadata is validated first
(types, ranges, a registered cell whose schema accepts the options, a model whose size fits in
memory), every array's shape and dtype is derived from it, and each member is read only after its
zip entry and ``.npy`` header match (:mod:`framework.training.safe_npz`).  Unknown or missing
members, object arrays and truncated files are one-line :class:`CheckpointError` messages.

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
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from framework.data.corpora.differencing import MAX_DIFFERENCE
from framework.errors import CheckpointError, RnnlabError, StorageError
from framework.training.safe_npz import Expect, NpzReader

if TYPE_CHECKING:
    from framework.data.vocab import Vocab
    from framework.nn.cell import Cell
    from framework.nn.models.language_model import CharRNN
    from framework.training.config import RunConfig

FORMAT_VERSION = 1
META_KEY = "__meta__"
PARAM_PREFIX = "param/"
OPTIM_PREFIX = "optim/"
STATE_PREFIX = "state/"
TMP_PREFIX = ".tmp-"
_STEP_RE = re.compile(r"^step_(\d+)\.npz$")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow run ids are uuid4 hex strings

# Bounds on what a checkpoint may claim.  The size check below is what protects memory; these keep
# the work before it small (a million 1-unit layers would take minutes to describe).
MAX_HIDDEN = 1 << 20
MAX_LAYERS = 1024
MAX_BATCH = 1 << 24
MAX_STEP = 1 << 62
MAX_WINDOW = 1 << 31
MAX_META_BYTES = 4 << 20
MAX_META_DEPTH = 32
MAX_CHECKPOINT_BYTES = 256 << 30  # a hard cap above whatever memory the machine reports

REQUIRED_META = ("format_version", "cell", "model", "vocab", "step")
OPTIONAL_META = ("smooth_loss", "best_val_loss", "dataset", "corpus_kind", "optimizer",
                 "generate", "config", "created", "task")
MODEL_FIELDS = ("hidden_size", "num_layers", "dropout", "init", "dtype", "cell_options")
CORPUS_KINDS = ("lines", "stream", "labelled", "series")
# The ``task`` field: its name and schema options, and what the task needs to use the model
# (classify: the class names and the text normalisation; forecast: the scaling statistics, and
# the order of differencing the model works in; checkpoints older than the field have 0).
TASK_FIELDS = ("name", "options", "bidirectional", "classes", "ascii", "lower", "mean", "std",
               "columns", "window", "horizon", "difference")
MAX_CLASSES = 1 << 16
MAX_FEATURES = 1 << 12
DTYPES = ("float32", "float64")

# Settings that must match for a resumed run to continue the same training, besides the options
# of every feed (must_match()). Everything else (the number of steps, logging cadence, sampling,
# tracking) may change when resuming.
MUST_MATCH = ("task", "cell", "dataset", "optimizer", "clip", "model", "seed", "dtype",
              "train.batch_size", "train.seq_len", "train.feed", "train.loss", "train.smoothing")


# Settings under a MUST_MATCH key that only choose how the same model is computed: a checkpoint
# moves freely between them (cell.backend: numpy or the compiled kernels, same parameters).
RUNTIME_ONLY = ("cell.backend",)


def must_match() -> tuple[str, ...]:
    """MUST_MATCH and every feed's train.* options: batches are a function of them."""
    from framework.registry import FEEDS

    return (*MUST_MATCH, *sorted({f"train.{key}" for name in FEEDS.names()
                                  for key in FEEDS.option_names(name)}))



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



# ---------------------------------------------------------------------------- building metadata
def build_meta(*, cell: str, hidden_size: int, num_layers: int, dropout: float, init: str,
               dtype: str, cell_options: Mapping[str, Any] | None, vocab_json: Any, step: int,
               dataset: str | None = None, optimizer: str | None = None,
               config: Mapping[str, Any] | None = None, corpus_kind: str | None = None,
               smooth_loss: float | None = None, best_val_loss: float | None = None,
               window: int | None = None) -> dict[str, Any]:
    """Checkpoint metadata with every field of the schema (the module docstring lists them)."""
    return {
        "format_version": FORMAT_VERSION,
        "cell": str(cell),
        "model": {"hidden_size": int(hidden_size), "num_layers": int(num_layers),
                  "dropout": float(dropout), "init": str(init), "dtype": str(dtype),
                  "cell_options": dict(cell_options or {})},
        "vocab": vocab_json,
        "dataset": dataset,
        "corpus_kind": corpus_kind,
        "optimizer": optimizer,
        "step": int(step),
        "smooth_loss": smooth_loss,
        "best_val_loss": best_val_loss,
        "generate": {"window": window},
        "config": dict(config or {}),
    }


def run_meta(rc: RunConfig, *, vocab: Vocab | None, corpus_kind: str, step: int,
             smooth_loss: float, best_val_loss: float,
             task: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of a training run's checkpoint (an infinite best loss means "none yet");
    ``task`` is what the task plugin stores (:meth:`framework.tasks.base.Task.meta`)."""
    options = rc.options("cell")
    meta = build_meta(
        cell=rc.cell.name, hidden_size=rc.cell.hidden_size, num_layers=rc.model.num_layers,
        dropout=rc.model.dropout, init=rc.cell.init, dtype=rc.dtype,
        cell_options={k: v for k, v in options.items()
                      if k not in ("hidden_size", "init", "backend")},  # backend: RUNTIME_ONLY
        vocab_json=vocab.to_json() if vocab is not None else None, step=step,
        dataset=rc.dataset.name,
        optimizer=rc.optimizer.name, config=rc.raw, corpus_kind=corpus_kind,
        smooth_loss=smooth_loss,
        best_val_loss=None if math.isinf(best_val_loss) else best_val_loss,
        window=rc.generate.window)
    if rc.task.name != "lm":  # language-model checkpoints keep the format they always had
        meta["task"] = {"name": rc.task.name, "options": rc.options("task"),
                        "bidirectional": bool(rc.model.bidirectional), **(task or {})}
    return meta


def pack_arrays(params: Mapping[str, np.ndarray],
                optimizer_state: Mapping[str, Any] | None = None,
                carried: Sequence[Sequence[np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Parameters, optimizer state and carried hidden state as the checkpoint's named arrays."""
    arrays = {f"{PARAM_PREFIX}{k}": v for k, v in params.items()}
    arrays.update({f"{OPTIM_PREFIX}{k}": np.asarray(v)
                   for k, v in (optimizer_state or {}).items()})
    arrays.update({f"{STATE_PREFIX}{i}/{j}": part for i, layer in enumerate(carried or ())
                   for j, part in enumerate(layer)})
    return arrays


# ----------------------------------------------------------------------------- parsing metadata
@dataclass(frozen=True)
class ModelSpec:
    """The model a checkpoint describes; ``cell`` is built (its schema checked) but holds no
    arrays, and ``param_shapes`` are computed, not allocated."""

    cell_name: str
    cell: Cell
    hidden_size: int
    num_layers: int
    dropout: float
    init: str
    dtype: np.dtype
    cell_options: dict[str, Any]
    param_shapes: dict[str, tuple[int, ...]]
    task: str = "lm"
    task_meta: dict[str, Any] = field(default_factory=dict)  # the validated ``task`` field

    @property
    def param_count(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes.values())


@dataclass(frozen=True)
class CheckpointMeta:
    """Validated metadata; ``raw`` is the JSON object as stored."""

    source: str
    raw: dict[str, Any]
    model: ModelSpec
    vocab: Vocab
    step: int
    smooth_loss: float | None
    best_val_loss: float | None
    dataset: str | None
    corpus_kind: str | None
    optimizer: str | None
    window: int | None
    config: dict[str, Any]
    batch_size: int | None  # config.train.batch_size: bounds the rows of the carried state
    sample_length: int | None
    sampler: dict[str, Any] | None

    @property
    def where(self) -> str:
        return f"checkpoint {self.source}" if self.source else "checkpoint"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Fields:
    """Type and range checks on metadata fields; every failure names the field and the value."""

    FIX = "the file is damaged or was not written by rnnlab; use another checkpoint"

    def __init__(self, source: str) -> None:
        self.where = f"checkpoint {source}" if source else "checkpoint"

    def fail(self, name: str, want: str, got: Any) -> CheckpointError:
        return CheckpointError(f"{self.where}: metadata field '{name}' must be {want}, got "
                               f"{_short(got)}; {self.FIX}")

    def integer(self, value: Any, name: str, lo: int, hi: int, optional: bool = False) -> Any:
        if value is None and optional:
            return None
        # type() rather than isinstance(): JSON true is a bool, and bool is an int subclass.
        if type(value) is not int or not lo <= value <= hi:
            raise self.fail(name, f"an integer in [{lo}, {hi}]" + (" or null" * optional), value)
        return value

    def number(self, value: Any, name: str, optional: bool = True) -> float | None:
        if value is None and optional:
            return None
        if type(value) not in (int, float) or not math.isfinite(value):
            raise self.fail(name, "a finite number" + (" or null" * optional), value)
        return float(value)

    def text(self, value: Any, name: str, choices: Sequence[str] = (),
            optional: bool = False) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or (choices and value not in choices):
            want = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            raise self.fail(name, want + (" or null" * optional), value)
        return value

    def mapping(self, value: Any, name: str, keys: Sequence[str] | None = None,
             optional: bool = True) -> dict[str, Any]:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.fail(name, "a JSON object", value)
        if keys is not None:
            unknown = sorted(set(value) - set(keys))
            if unknown:
                raise CheckpointError(f"{self.where}: metadata field '{name}' has unknown "
                                      f"key(s) {', '.join(map(repr, unknown))}; {self.FIX}")
        return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def memory_limit() -> int:
    """Bytes a checkpoint's arrays may take in memory: what the system reports as available
    (MemAvailable, or a container's lower memory limit), at most ``MAX_CHECKPOINT_BYTES``."""
    available = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 << 30
    with contextlib.suppress(OSError, ValueError):
        # A container's own limit (cgroup v2).  Its usage is not subtracted: it counts page
        # cache the kernel would reclaim, which MemAvailable already accounts for.
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap != "max":
            available = min(available, int(cap))
    return max(0, min(available, MAX_CHECKPOINT_BYTES))


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:,.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:,.1f} MB"


def parse_meta(raw: Any, source: str = "") -> CheckpointMeta:
    """Validate checkpoint metadata completely, before any array is read.

    Checks the type and range of every field, that the cell is registered and its schema accepts
    the options, and that the model it describes fits in memory (:func:`memory_limit`).
    ``source`` (the file) is named in messages.
    """
    from framework.data.vocab import Vocab
    from framework.plugins import load_plugins
    from framework.registry import CELLS

    f = _Fields(source)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{f.where}: metadata must be a JSON object, got "
                              f"{type(raw).__name__}; {f.FIX}")
    version = raw.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{source or 'checkpoint'} has checkpoint format_version {_short(version)}, this "
            f"rnnlab reads {FORMAT_VERSION}; re-create the checkpoint with this version")
    unknown = sorted(set(raw) - set(REQUIRED_META) - set(OPTIONAL_META))
    if unknown:
        raise CheckpointError(f"{f.where}: metadata has unknown field(s) "
                              f"{', '.join(map(repr, unknown))}; {f.FIX}")
    missing = [k for k in REQUIRED_META if k not in raw]
    if missing:
        raise CheckpointError(f"{f.where}: metadata lacks {', '.join(missing)}; cannot rebuild "
                              f"the model; {f.FIX}")
    if _depth(raw) > MAX_META_DEPTH:
        raise CheckpointError(f"{f.where}: metadata is nested more than {MAX_META_DEPTH} levels "
                              f"deep; {f.FIX}")
    load_plugins()
    cell_name = f.text(raw["cell"], "cell")
    if cell_name not in CELLS:
        raise CheckpointError(f"{f.where}: {CELLS.unknown_message(cell_name)}; install the "
                              f"plugin that defines it")
    m = f.mapping(raw["model"], "model", keys=MODEL_FIELDS, optional=False)
    absent = [k for k in MODEL_FIELDS if k not in m]
    if absent:
        raise CheckpointError(f"{f.where}: metadata field 'model' lacks {', '.join(absent)}; "
                              f"{f.FIX}")
    hidden = f.integer(m["hidden_size"], "model.hidden_size", 1, MAX_HIDDEN)
    layers = f.integer(m["num_layers"], "model.num_layers", 1, MAX_LAYERS)
    dropout = f.number(m["dropout"], "model.dropout", optional=False)
    if not 0.0 <= dropout < 1.0:
        raise f.fail("model.dropout", "in [0, 1)", m["dropout"])
    init = f.text(m["init"], "model.init")
    dtype = np.dtype(f.text(m["dtype"], "model.dtype", DTYPES))
    options = f.mapping(m["cell_options"], "model.cell_options", optional=False)
    reserved = sorted({"name", "hidden_size", "init"} & set(options))
    if reserved:
        raise CheckpointError(f"{f.where}: metadata field 'model.cell_options' repeats "
                              f"{', '.join(reserved)}; {f.FIX}")
    task = _parse_task(f, raw.get("task"))
    if raw["vocab"] is None and task["name"] == "forecast":
        vocab = None  # real-valued inputs have no vocabulary
    else:
        try:
            vocab = Vocab.from_json(raw["vocab"])
        except (RnnlabError, RecursionError) as exc:
            raise CheckpointError(f"{f.where}: vocabulary is unreadable: {exc}") from None
    step = f.integer(raw["step"], "step", 0, MAX_STEP)
    smooth = f.number(raw.get("smooth_loss"), "smooth_loss")
    best = f.number(raw.get("best_val_loss"), "best_val_loss")
    dataset = f.text(raw.get("dataset"), "dataset", optional=True)
    corpus_kind = f.text(raw.get("corpus_kind"), "corpus_kind", CORPUS_KINDS, optional=True)
    optimizer = f.text(raw.get("optimizer"), "optimizer", optional=True)
    f.text(raw.get("created"), "created", optional=True)
    config = f.mapping(raw.get("config"), "config")
    train = f.mapping(config.get("train"), "config.train")
    batch_size = f.integer(train.get("batch_size"), "config.train.batch_size", 1, MAX_BATCH, True)
    sample_length = f.integer(train.get("sample_length"), "config.train.sample_length", 1,
                          MAX_WINDOW, True)
    sampler = config.get("sampler")
    if sampler is not None:
        f.text(f.mapping(sampler, "config.sampler").get("name"), "config.sampler.name")
    generate = f.mapping(raw.get("generate"), "generate", keys=("window",))
    if "window" not in generate:  # older metadata kept it in the config only
        generate = f.mapping(config.get("generate"), "config.generate")
    window = f.integer(generate.get("window"), "generate.window", 1, MAX_WINDOW, True)
    try:
        cell = CELLS.build({"name": cell_name, "hidden_size": hidden, "init": init, **options})
        shapes = task_param_shapes(task, cell, vocab, layers)
    except RnnlabError as exc:
        raise CheckpointError(f"{f.where}: its model config does not build a model: "
                              f"{exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{f.where}: its model config is invalid: {exc}") from None
    spec = ModelSpec(cell_name, cell, hidden, layers, dropout, init, dtype, dict(options), shapes,
                     task["name"], task)
    nbytes = spec.param_count * dtype.itemsize
    limit = memory_limit()
    if nbytes > limit:
        raise CheckpointError(
            f"{f.where}: its metadata describes a model of {spec.param_count:,} parameters "
            f"({_gb(nbytes)}; hidden_size={hidden}, num_layers={layers}), more than the "
            f"{_gb(limit)} of memory available; refused before "
            f"reading it")
    return CheckpointMeta(source=source, raw=raw, model=spec, vocab=vocab, step=step,
                          smooth_loss=smooth, best_val_loss=best, dataset=dataset,
                          corpus_kind=corpus_kind, optimizer=optimizer, window=window,
                          config=config, batch_size=batch_size, sample_length=sample_length,
                          sampler=sampler)


def _parse_task(f: _Fields, raw: Any) -> dict[str, Any]:
    """The validated ``task`` field (absent: the language model of checkpoints before tasks)."""
    from framework.registry import TASKS

    if raw is None:
        return {"name": "lm", "options": {}}
    m = f.mapping(raw, "task", keys=TASK_FIELDS, optional=False)
    name = f.text(m.get("name"), "task.name")
    if name not in TASKS:
        raise CheckpointError(f"{f.where}: {TASKS.unknown_message(name)}; install the plugin "
                              f"that defines it")
    options = f.mapping(m.get("options"), "task.options")
    try:
        TASKS.validate({"name": name, **options})
    except RnnlabError as exc:
        raise CheckpointError(f"{f.where}: metadata field 'task.options': {exc}") from None
    out: dict[str, Any] = {"name": name, "options": dict(options),
                           "bidirectional": m.get("bidirectional", False) is True}
    if name == "classify":
        classes = m.get("classes")
        if (not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES
                or not all(isinstance(c, str) and c for c in classes)):
            raise f.fail("task.classes", f"a list of 2 to {MAX_CLASSES} class names", classes)
        out.update(classes=list(classes), ascii=m.get("ascii") is True,
                   lower=m.get("lower") is True)
    if name == "forecast":
        for key in ("mean", "std"):
            values = m.get(key)
            if (not isinstance(values, list) or not 1 <= len(values) <= MAX_FEATURES or not all(
                    type(v) in (int, float) and math.isfinite(v) for v in values)):
                raise f.fail(f"task.{key}", f"a list of 1 to {MAX_FEATURES} finite numbers",
                             values)
        if len(m["std"]) != len(m["mean"]) or not all(v > 0 for v in m["std"]):
            raise f.fail("task.std", "positive numbers, one per feature", m["std"])
        columns = m.get("columns") or [f"x{i}" for i in range(len(m["mean"]))]
        if not isinstance(columns, list) or len(columns) != len(m["mean"]):
            raise f.fail("task.columns", "one name per feature", columns)
        out.update(mean=[float(v) for v in m["mean"]], std=[float(v) for v in m["std"]],
                   columns=[str(c) for c in columns],
                   window=f.integer(m.get("window"), "task.window", 1, MAX_WINDOW),
                   horizon=f.integer(m.get("horizon"), "task.horizon", 1, MAX_WINDOW),
                   difference=f.integer(m.get("difference", 0), "task.difference", 0,
                                        MAX_DIFFERENCE))
        if options.get("difference", out["difference"]) != out["difference"]:
            raise f.fail("task.difference", f"the task options' difference "
                         f"({options.get('difference')!r})", out["difference"])
    return out


def task_param_shapes(task: Mapping[str, Any], cell: Any, vocab: Any,
                      num_layers: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the parameters of the task's model, in ``init_params`` order."""
    from framework.nn.models.language_model import param_shapes

    name = task["name"]
    if name == "lm":
        return param_shapes(cell, vocab.size, num_layers)
    if name == "classify":
        d_in, n_out = vocab.size, len(task["classes"])
    else:
        d_in = len(task["mean"])
        n_out = task["horizon"] * d_in
    stacks = ("fwd.layers.", "bwd.layers.") if task.get("bidirectional") else ("layers.",)
    shapes: dict[str, tuple[int, ...]] = {}
    for prefix in stacks:
        for layer in range(num_layers):
            size = d_in if layer == 0 else cell.hidden_size
            for key, shape in cell.param_shapes(size).items():
                shapes[f"{prefix}{layer}.{key}"] = shape
    shapes["head.W"] = (cell.hidden_size * len(stacks), n_out)
    shapes["head.b"] = (n_out,)
    return shapes


def _decode_meta(raw: np.ndarray, shown: str) -> Any:
    try:
        return json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{shown}: metadata is not valid JSON ({detail})") from None


# ------------------------------------------------------------------------- the expected arrays
def _optimizer_slots(name: str | None) -> tuple[str, ...] | None:
    """The buffer slots of a registered optimizer (``Optimizer.slots``), or None if unknown."""
    from framework.registry import OPTIMIZERS

    if name is None or name not in OPTIMIZERS:
        return None
    slots = getattr(OPTIMIZERS.get(name), "slots", None)
    if not isinstance(slots, tuple) or not all(isinstance(s, str) and s and "." not in s
                                               for s in slots):
        return None
    return slots


def expected_arrays(meta: CheckpointMeta) -> dict[str, Expect]:
    """Every array the metadata allows, with its shape and dtype, in model order.

    Parameters are required; optimizer state (``t`` and one buffer per slot and parameter) and
    carried state (rows up to ``config.train.batch_size``) may be absent, but not partly so.
    """
    spec = meta.model
    dt = spec.dtype
    out = {f"{PARAM_PREFIX}{k}": Expect(dt, s) for k, s in spec.param_shapes.items()}
    slots = _optimizer_slots(meta.optimizer)
    if slots is not None:
        out[f"{OPTIM_PREFIX}t"] = Expect(np.dtype(np.int64), ())
        for slot in slots:
            out.update({f"{OPTIM_PREFIX}{slot}.{k}": Expect(dt, s)
                        for k, s in spec.param_shapes.items()})
    if meta.batch_size is not None:
        for layer in range(spec.num_layers):
            for k in range(int(spec.cell.state_size)):
                out[f"{STATE_PREFIX}{layer}/{k}"] = Expect(dt, (None, spec.hidden_size),
                                                           max_rows=meta.batch_size)
    return out


def _what(name: str) -> str:
    for prefix, kind in ((PARAM_PREFIX, "parameter"), (OPTIM_PREFIX, "optimizer state"),
                         (STATE_PREFIX, "hidden state")):
        if name.startswith(prefix):
            return f"{kind} '{name[len(prefix):]}'"
    return "metadata" if name == META_KEY else f"array '{name}'"


def _check_members(names: Sequence[str], expected: Mapping[str, Expect], meta: CheckpointMeta,
                   for_resume: bool) -> None:
    """Refuse unknown members, missing parameters and half-present optimizer or carried state."""
    present = set(names) - {META_KEY}
    unexpected = sorted(present - set(expected))
    missing = sorted(k for k in expected if k.startswith(PARAM_PREFIX) and k not in present)
    for prefix in (OPTIM_PREFIX, STATE_PREFIX):
        group = [k for k in expected if k.startswith(prefix)]
        if any(k in present for k in group):
            buffers = [k for k in group if k != f"{OPTIM_PREFIX}t"]
            have = [k for k in buffers if k in present]
            missing += [k for k in group if k not in present and (have or k not in buffers)]
    if unexpected or missing:
        hint = "the file is damaged or was written by another program"
        if any(k.startswith(OPTIM_PREFIX) for k in unexpected) and \
                _optimizer_slots(meta.optimizer) is None:
            hint = ("its metadata names no optimizer" if meta.optimizer is None else
                    f"its optimizer {meta.optimizer!r} is not a registered optimizer here; "
                    f"install the plugin that defines it")
        raise CheckpointError(
            f"{meta.where}: its arrays do not match the model its metadata describes "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}); {hint}")
    if for_resume:
        needed = [(OPTIM_PREFIX, "optimizer state")]
        if meta.model.task == "lm":  # only the language model carries its state across batches
            needed.append((STATE_PREFIX, "hidden state"))
        for prefix, what in needed:
            if not any(k.startswith(prefix) for k in present):
                raise CheckpointError(f"resume: {meta.where} holds no {what}; resume needs a "
                                      f"checkpoint written by a training run")


# ---------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: validated metadata and the arrays it was checked against."""

    meta: CheckpointMeta
    arrays: dict[str, np.ndarray] = field(repr=False)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: self.arrays[f"{PARAM_PREFIX}{k}"] for k in self.meta.model.param_shapes}

    @property
    def optimizer_state(self) -> dict[str, np.ndarray]:
        n = len(OPTIM_PREFIX)
        return {k[n:]: v for k, v in self.arrays.items() if k.startswith(OPTIM_PREFIX)}

    @property
    def carried_state(self) -> list[tuple[np.ndarray, ...]] | None:
        spec = self.meta.model
        first = f"{STATE_PREFIX}0/0"
        if first not in self.arrays:
            return None
        return [tuple(self.arrays[f"{STATE_PREFIX}{layer}/{k}"]
                      for k in range(int(spec.cell.state_size)))
                for layer in range(spec.num_layers)]


_META_EXPECT = Expect(np.dtype(np.uint8), (None,), max_rows=MAX_META_BYTES)


def read_checkpoint(path: str | os.PathLike[str], *,
                    check: Callable[[CheckpointMeta], None] | None = None,
                    for_resume: bool = False, params_only: bool = False) -> Checkpoint:
    """Read and validate a checkpoint file; every problem is a one-line CheckpointError.

    The metadata is read and validated first, then ``check(meta)`` runs (resume's compatibility
    check), then the member list is compared with :func:`expected_arrays` and the total size with
    :func:`memory_limit`, and only then are arrays read, each after its header matched.
    ``params_only`` skips reading the data of optimizer and carried state (their names, sizes
    and headers are still checked).
    """
    shown = str(path)
    with NpzReader(path) as npz:
        if META_KEY not in npz.names:
            raise CheckpointError(f"{shown} is not an rnnlab checkpoint (no {META_KEY} entry)")
        blob = npz.read(META_KEY, _META_EXPECT, "metadata",
                        hint="it is not an rnnlab checkpoint")
        meta = parse_meta(_decode_meta(blob, shown), shown)
        if check is not None:
            check(meta)
        expected = expected_arrays(meta)
        _check_members(npz.names, expected, meta, for_resume)
        present = set(npz.names)
        wanted = [k for k in expected if k in present
                  and not (params_only and not k.startswith(PARAM_PREFIX))]
        total = sum(expected[k].max_bytes for k in wanted)
        limit = memory_limit()
        if total > limit:
            raise CheckpointError(f"{meta.where} needs {_gb(total)} of memory, more than the "
                                  f"{_gb(limit)} available; refused before reading it")
        for k in expected:
            if k in present and k not in wanted:
                npz.check(k, expected[k], _what(k))
        arrays = {k: npz.read(k, expected[k], _what(k)) for k in wanted}
    rows = {a.shape[0] for k, a in arrays.items() if k.startswith(STATE_PREFIX)}
    if len(rows) > 1:
        raise CheckpointError(f"{meta.where}: its hidden state arrays disagree on the batch size "
                              f"({sorted(rows)}); the file is damaged")
    return Checkpoint(meta, arrays)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, metadata as stored)`` of a validated checkpoint (see :func:`read_checkpoint`)."""
    ckpt = read_checkpoint(path)
    return ckpt.arrays, ckpt.meta.raw


def build_model(checkpoint: Checkpoint) -> tuple[CharRNN, Vocab]:
    """The ``(CharRNN, Vocab)`` a checkpoint holds, with its trained parameters."""
    from framework.nn.models.language_model import CharRNN

    spec = checkpoint.meta.model
    task, vocab = spec.task_meta, checkpoint.meta.vocab
    common = dict(hidden_size=spec.hidden_size, num_layers=spec.num_layers,
                  dropout=spec.dropout, init=spec.init, dtype=spec.dtype.name)
    try:
        if spec.task == "classify":
            from framework.nn.models.many_to_one import SequenceClassifier

            model = SequenceClassifier(spec.cell, vocab.size, len(task["classes"]), **common,
                                       bidirectional=task["bidirectional"])
        elif spec.task == "forecast":
            from framework.nn.models.many_to_one import SequenceForecaster

            model = SequenceForecaster(spec.cell, len(task["mean"]), task["horizon"], **common,
                                       bidirectional=task["bidirectional"])
        else:
            model = CharRNN(cell=spec.cell, vocab_size=vocab.size, **common)
    except RnnlabError as exc:
        raise CheckpointError(f"{checkpoint.meta.where}: its model config does not build a "
                              f"model: {exc}") from None
    model.params = {k: np.ascontiguousarray(v) for k, v in checkpoint.params.items()}
    return model, checkpoint.meta.vocab


def build_model_from_checkpoint(arrays: Mapping[str, np.ndarray],
                                meta: Mapping[str, Any] | CheckpointMeta) -> tuple[CharRNN, Vocab]:
    """:func:`build_model` for arrays and metadata already in memory, checked the same way."""
    parsed = meta if isinstance(meta, CheckpointMeta) else parse_meta(meta)
    expected = expected_arrays(parsed)
    _check_members(list(arrays), expected, parsed, for_resume=False)
    for name, value in arrays.items():
        arr = np.asarray(value)
        if not expected[name].matches(arr.shape, arr.dtype):
            raise CheckpointError(
                f"{parsed.where}: {_what(name)} has shape {arr.shape} {arr.dtype}, the metadata "
                f"implies {expected[name].shown()}")
    return build_model(Checkpoint(parsed, dict(arrays)))


def load_model(path: str | os.PathLike[str]) -> tuple[CharRNN, Vocab, CheckpointMeta]:
    """Model, vocabulary and metadata of a checkpoint file, for generation and serving."""
    ckpt = read_checkpoint(path, params_only=True)
    model, vocab = build_model(ckpt)
    return model, vocab, ckpt.meta


# ------------------------------------------------------------------------- finding and resuming
def resolve_checkpoint(target: str | os.PathLike[str],
                       download: Callable[[str], Path] | None = None) -> Path:
    """The checkpoint file that ``resume=``, ``checkpoint=`` or ``run_id=`` names.

    ``target`` is a ``.npz`` file, a run directory (its ``checkpoints/latest.npz`` or
    ``latest.npz``), or, when ``download(run_id) -> Path`` is given, an MLflow run id.
    """
    text = str(target)
    path = Path(text).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "latest.npz", path / "latest.npz"):
            if candidate.exists():
                return candidate
        raise CheckpointError(f"directory {path} holds no checkpoints/latest.npz or latest.npz; "
                              f"pass a .npz checkpoint file or a run directory")
    if path.exists() or path.is_symlink():
        return path
    if download is not None:
        if RUN_ID.match(text):
            return download(text)
        raise CheckpointError(f"'{text}' is neither a checkpoint file nor an MLflow run id; pass "
                              f"the path of a .npz checkpoint, a run directory or a run id")
    raise CheckpointError(f"checkpoint {path} not found; check the path")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _task_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the task options it lacks set to their defaults: a checkpoint written
    before a task option existed trained with what the option's default does."""
    import dataclasses

    from framework.registry import TASKS

    out = dict(config)
    task = out.get("task")
    if not isinstance(task, Mapping) or task.get("name") not in TASKS:
        return out
    defaults = {f.name: f.default for f in TASKS.option_fields(str(task["name"]))
                if f.default is not dataclasses.MISSING}
    out["task"] = {**defaults, **task}
    return out


def conflicts(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: saved -> current`` for every resume-relevant setting that differs."""
    old, new = _flat(_task_defaults(saved)), _flat(dict(current))
    must = must_match()
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in RUNTIME_ONLY and any(key == m or key.startswith(m + ".") for m in must):
            if old.get(key) != new.get(key):
                out.append(f"{key}={old.get(key)!r} in the checkpoint, {new.get(key)!r} now")
    return out


def check_resume(meta: CheckpointMeta, *, config: Mapping[str, Any], vocab: Vocab,
                 params: Mapping[str, np.ndarray], steps: int) -> None:
    """Refuse a checkpoint the configured run cannot continue; runs before any array is read.

    ``config`` is the new run's resolved config, ``params`` its freshly built parameters and
    ``steps`` its ``train.steps``.
    """
    if not meta.config:
        raise CheckpointError(f"resume: {meta.where} has no saved config; it is not an rnnlab "
                              f"training checkpoint")
    diff = conflicts(meta.config, config)
    if diff:
        raise CheckpointError("resume: the config conflicts with the checkpoint (" + "; ".join(diff)
                              + "); drop those overrides or start a new run")
    if meta.vocab != vocab:
        raise CheckpointError("resume: the dataset's vocabulary differs from the checkpoint's; "
                              "resume on the data it was trained on")
    have = {k: (tuple(s), meta.model.dtype) for k, s in meta.model.param_shapes.items()}
    want = {k: (tuple(v.shape), v.dtype) for k, v in params.items()}
    if have != want:
        odd = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise CheckpointError(f"resume: {meta.where} holds another model than the config builds "
                              f"(parameters {odd[:5]} differ); it is from another model")
    if meta.smooth_loss is None:
        raise CheckpointError(f"resume: {meta.where} has no smooth_loss; resume needs a "
                              f"checkpoint written by a training run")
    if meta.step >= steps:
        where = "= train.steps" if meta.step == steps else f"> train.steps={steps}"
        raise CheckpointError(f"{meta.where} is at step {meta.step} {where}; nothing to train: "
                              f"raise train.steps to continue")


def read_for_resume(path: str | os.PathLike[str], *, config: Mapping[str, Any], vocab: Vocab,
                    params: Mapping[str, np.ndarray], steps: int) -> Checkpoint:
    """:func:`read_checkpoint` with :func:`check_resume`, requiring optimizer and carried state."""
    return read_checkpoint(
        path, for_resume=True,
        check=lambda meta: check_resume(meta, config=config, vocab=vocab, params=params,
                                        steps=steps))
