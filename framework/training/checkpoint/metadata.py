"""Checkpoint metadata: its schema, how a run writes it, and its validation before any array.

Metadata (``__meta__``, JSON; every field is checked on load, unknown fields are refused)
    format_version  int, == FORMAT_VERSION; other versions are refused
    cell            str, a registered cell name, e.g. "lstm"
    model           {"hidden_size": int, "num_layers": int, "dropout": float, "init": str,
                     "dtype": "float32"|"float64", "cell_options": {…the cell's schema options…}}
    vocab           Vocab.to_json() of the training vocabulary (null for a task without one)
    step            int >= 0, optimizer steps completed
    smooth_loss     float or null, the smoothed training loss (resume needs it)
    best_val_loss   float or null, the best validation loss so far
    dataset, optimizer, corpus_kind   str (optional)
    generate        {"window": int or null} (optional)
    config          dict, the validated training config (resume compares it with the new one)
    task            {"name", "options", "bidirectional", …the task's own ``meta_fields``…}
                    (absent: the default task, as written before tasks existed)
    created         str, ISO-8601 UTC time (added by save_checkpoint when missing)
    early_stop      {"best_step": int or null, "bad_evals": int, "metrics": {name: float},
                     "restored": bool} (only with train.early_stop.patience > 0): the step and
                     metrics of the best eval (its value is best_val_loss), evals since it, and
                     whether ``param/`` holds the restored best (then ``kept/`` holds the last
                     step's parameters; before that ``kept/`` holds the best eval's)

The task-specific part of ``task`` is read by the task plugin (:meth:`Task.read_meta`), and the
task rebuilds the model it describes (:meth:`Task.model_from_meta`), whose ``param_shapes()`` are
what the arrays must be.  The model's size is checked against the memory available
(:mod:`.memory`) before anything else is read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

import framework.training.checkpoint.memory as memory
from framework.errors import CheckpointError, RnnlabError
from framework.tasks.base import MAX_WINDOW
from framework.training.checkpoint.fields import Fields, depth, short
from framework.training.checkpoint.files import FORMAT_VERSION

if TYPE_CHECKING:
    from framework.data.vocab import Vocab
    from framework.nn.cell import Cell
    from framework.training.config import RunConfig

# Bounds on what a checkpoint may claim.  The size check is what protects memory; these keep the
# work before it small (a million 1-unit layers would take minutes to describe).
MAX_HIDDEN = 1 << 20
MAX_LAYERS = 1024
MAX_BATCH = 1 << 24
MAX_STEP = 1 << 62
MAX_META_BYTES = 4 << 20
MAX_META_DEPTH = 32

REQUIRED_META = ("format_version", "cell", "model", "vocab", "step")
OPTIONAL_META = ("smooth_loss", "best_val_loss", "dataset", "corpus_kind", "optimizer",
                 "generate", "config", "created", "task", "early_stop")
EARLY_STOP_FIELDS = ("best_step", "bad_evals", "metrics", "restored")
MAX_METRICS = 256  # metrics an eval may report
MODEL_FIELDS = ("hidden_size", "num_layers", "dropout", "init", "dtype", "cell_options")
CORPUS_KINDS = ("lines", "stream", "labelled", "series", "sequences", "parallel")
DTYPES = ("float32", "float64")


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
             task: Mapping[str, Any] | None = None,
             early_stop: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of a training run's checkpoint (an infinite best loss means "none yet");
    ``task`` is the task plugin's field (:meth:`framework.tasks.base.Task.checkpoint_field`),
    ``early_stop`` early stopping's state (:meth:`BestEval.to_meta`), each None for none."""
    options = rc.options("cell")
    meta = build_meta(
        cell=rc.cell.name, hidden_size=rc.cell.hidden_size, num_layers=rc.model.num_layers,
        dropout=rc.model.dropout, init=rc.cell.init, dtype=rc.dtype,
        cell_options={k: v for k, v in options.items()
                      if k not in ("hidden_size", "init", "backend")},  # backend: RUNTIME_ONLY
        vocab_json=vocab.to_json() if vocab is not None else None, step=step,
        dataset=rc.dataset.name,
        optimizer=rc.optimizer.name, config=rc.to_dict(), corpus_kind=corpus_kind,
        smooth_loss=smooth_loss,
        best_val_loss=None if math.isinf(best_val_loss) else best_val_loss,
        window=rc.generate.window)
    if task is not None:
        meta["task"] = dict(task)
    if early_stop is not None:
        meta["early_stop"] = dict(early_stop)
    return meta


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
    task: str  # the task's name
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
    early_stop: dict[str, Any] | None = None  # the validated ``early_stop`` field

    @property
    def where(self) -> str:
        return f"checkpoint {self.source}" if self.source else "checkpoint"


def parse_meta(raw: Any, source: str = "") -> CheckpointMeta:
    """Validate checkpoint metadata completely, before any array is read.

    Checks the type and range of every field, that the cell is registered and its schema accepts
    the options, and that the model it describes fits in memory (:func:`.memory.memory_limit`).
    ``source`` (the file) is named in messages.
    """
    from framework.data.vocab import Vocab
    from framework.plugins import load_plugins
    from framework.registry import CELLS, TASKS

    f = Fields(source)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{f.where}: metadata must be a JSON object, got "
                              f"{type(raw).__name__}; {f.FIX}")
    version = raw.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{source or 'checkpoint'} has checkpoint format_version {short(version)}, this "
            f"rnnlab reads {FORMAT_VERSION}; re-create the checkpoint with this version")
    unknown = sorted(set(raw) - set(REQUIRED_META) - set(OPTIONAL_META))
    if unknown:
        raise CheckpointError(f"{f.where}: metadata has unknown field(s) "
                              f"{', '.join(map(repr, unknown))}; {f.FIX}")
    missing = [k for k in REQUIRED_META if k not in raw]
    if missing:
        raise CheckpointError(f"{f.where}: metadata lacks {', '.join(missing)}; cannot rebuild "
                              f"the model; {f.FIX}")
    if depth(raw) > MAX_META_DEPTH:
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
    task_plugin = TASKS.get(task["name"])
    if raw["vocab"] is None and not task_plugin.reads_vocab(task):
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
    early_stop = _parse_early_stop(f, raw.get("early_stop"), step)
    try:
        cell = CELLS.build({"name": cell_name, "hidden_size": hidden, "init": init, **options})
        spec = ModelSpec(cell_name, cell, hidden, layers, dropout, init, dtype, dict(options), {},
                         task["name"], task)
        shapes = task_plugin.model_from_meta(spec, vocab).param_shapes()
    except RnnlabError as exc:
        raise CheckpointError(f"{f.where}: its model config does not build a model: "
                              f"{exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{f.where}: its model config is invalid: {exc}") from None
    spec = dataclasses.replace(spec, param_shapes=shapes)
    nbytes = spec.param_count * dtype.itemsize
    limit = memory.memory_limit()
    if nbytes > limit:
        raise CheckpointError(
            f"{f.where}: its metadata describes a model of {spec.param_count:,} parameters "
            f"({memory.gb(nbytes)}; hidden_size={hidden}, num_layers={layers}), more than the "
            f"{memory.gb(limit)} of memory available; refused before "
            f"reading it")
    return CheckpointMeta(source=source, raw=raw, model=spec, vocab=vocab, step=step,
                          smooth_loss=smooth, best_val_loss=best, dataset=dataset,
                          corpus_kind=corpus_kind, optimizer=optimizer, window=window,
                          config=config, batch_size=batch_size, sample_length=sample_length,
                          sampler=sampler, early_stop=early_stop)




def _parse_early_stop(f: Fields, raw: Any, step: int) -> dict[str, Any] | None:
    """The validated ``early_stop`` field (absent: written without early stopping)."""
    if raw is None:
        return None
    m = f.mapping(raw, "early_stop", keys=EARLY_STOP_FIELDS, optional=False)
    absent = [k for k in EARLY_STOP_FIELDS if k not in m]
    if absent:
        raise CheckpointError(f"{f.where}: metadata field 'early_stop' lacks "
                              f"{', '.join(absent)}; {f.FIX}")
    best_step = f.integer(m["best_step"], "early_stop.best_step", 0, step, optional=True)
    bad_evals = f.integer(m["bad_evals"], "early_stop.bad_evals", 0, MAX_STEP)
    metrics = f.mapping(m["metrics"], "early_stop.metrics", optional=False)
    if len(metrics) > MAX_METRICS:
        raise f.fail("early_stop.metrics", f"at most {MAX_METRICS} metrics", len(metrics))
    values = {}
    for name, value in metrics.items():
        values[name] = f.number(value, f"early_stop.metrics.{name}", optional=False)
    restored = m["restored"]
    if type(restored) is not bool or (restored and best_step is None):
        raise f.fail("early_stop.restored", "true or false (true only with a best_step)",
                     restored)
    return {"best_step": best_step, "bad_evals": bad_evals, "metrics": values,
            "restored": restored}


def _parse_task(f: Fields, raw: Any) -> dict[str, Any]:
    """The validated ``task`` field (absent: the default task, written before tasks existed):
    its name, options and direction here, the rest by the task plugin."""
    from framework.registry import TASKS
    from framework.tasks.base import DEFAULT_TASK, META_KEYS

    if raw is None:
        return {"name": DEFAULT_TASK, "options": {}}
    m = f.mapping(raw, "task", optional=False)
    name = f.text(m.get("name"), "task.name")
    if name not in TASKS:
        raise CheckpointError(f"{f.where}: {TASKS.unknown_message(name)}; install the plugin "
                              f"that defines it")
    task = TASKS.get(name)
    f.mapping(m, "task", keys=(*META_KEYS, *task.meta_fields), optional=False)
    options = f.mapping(m.get("options"), "task.options")
    try:
        TASKS.validate({"name": name, **options})
    except RnnlabError as exc:
        raise CheckpointError(f"{f.where}: metadata field 'task.options': {exc}") from None
    own = task.read_meta(f, m, options)
    return {"name": name, "options": dict(options),
            "bidirectional": m.get("bidirectional", False) is True, **own}


__all__ = ["CORPUS_KINDS", "DTYPES", "EARLY_STOP_FIELDS", "MAX_META_BYTES", "CheckpointMeta",
           "ModelSpec", "build_meta", "parse_meta", "run_meta"]
