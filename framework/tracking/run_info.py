"""What a run records about itself in MLflow: its params, its description and its dataset.

* Params are the run's resolved options only: each plugin group's chosen plugin with its own
  schema's fields (an ``rnn`` run has no ``cell.forget_bias``), the training settings with the
  options of the chosen feed and lr schedule only, ``model.*``, ``generate.*``, ``seed``,
  ``dtype`` and ``threads``. Where and how the run is logged (``mlflow.*``), the sweeper's
  bookkeeping (``optuna.*``) and Hydra's own settings are not what was trained, so they are not
  params. Floats are rounded to 6 significant digits; ints and strings are exact.
* The description (tag ``mlflow.note.content``, shown on the run page) says in one line what was
  trained on what.
* The dataset is the run's MLflow input: its plugin name, where the file came from, and the
  sha256 of the file (or of the files, for a dataset of several), context ``training``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.tracking.params import flatten_config, param_value

NOTE_TAG = "mlflow.note.content"
DIGEST_TAG = "rnnlab.dataset_sha256"
# The run's own sections, besides the plugin groups (whose options come from their schemas).
RUN_SECTIONS = ("model", "generate")
RUN_SCALARS = ("seed", "dtype", "threads", "resume")


def _options(section: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(section):  # nested sections (train.early_stop) as mappings
        return dataclasses.asdict(section)
    return dict(section or {})


def run_params(rc: Any) -> dict[str, Any]:
    """The params of a run: ``{"cell.name": "lstm", "cell.hidden_size": 128, ...}`` (values
    not yet stringified; :func:`framework.tracking.params.flatten_config` does that)."""
    from framework.registry import REGISTRIES

    out: dict[str, Any] = {}
    for group in REGISTRIES:
        section = getattr(rc, group)
        out[f"{group}.name"] = getattr(section, "name", None)
        out.update({f"{group}.{k}": v for k, v in rc.options(group).items()})
    if getattr(rc, "tokenizer", None) is not None:  # chosen with tokenizer=<name>
        out["tokenizer.name"] = rc.tokenizer.name
        out.update({f"tokenizer.{k}": v for k, v in rc.options("tokenizer").items()})
    train = _options(rc.train)
    for key in ("feed", "lr_schedule"):  # the chosen plugin's options are train.* keys
        plugin = getattr(rc, key, None)
        if plugin is not None:
            train.update({k: v for k, v in _options(plugin).items() if k != "name"})
    out.update({f"train.{k}": v for k, v in sorted(train.items())})
    for name in RUN_SECTIONS:
        out.update({f"{name}.{k}": v for k, v in _options(getattr(rc, name)).items()})
    for name in RUN_SCALARS:
        value = getattr(rc, name)
        if name != "resume" or value is not None:
            out[name] = value
    return out


# ------------------------------------------------------------------------------ description
def _task(rc: Any) -> Any:
    from framework.registry import TASKS

    return TASKS.get(rc.task.name)(rc.task)


def describe(rc: Any, corpus: Any = None) -> str:
    """One line: what was trained on what, e.g. ``LSTM (2x256) language model on
    tinyshakespeare, 5000 steps, adam lr 0.003, seed 0`` (the task says its noun and data)."""
    task = _task(rc)
    shape = f"{rc.model.num_layers}x{getattr(rc.cell, 'hidden_size', '?')}"
    if getattr(rc.model, "bidirectional", False):
        shape += ", bidirectional"
    lr = getattr(rc.optimizer, "lr", None)
    optimizer = rc.optimizer.name + (f" lr {param_value(float(lr))}" if lr is not None else "")
    line = (f"{rc.cell.name.upper()} ({shape}) {task.noun} on {task.describe_data(rc, corpus)}, "
            f"{rc.train.steps} steps, {optimizer}, seed {rc.seed}")
    if rc.resume:
        line += f" (resumed from {rc.resume})"
    return line


# ------------------------------------------------------------------------------ the dataset
@dataclass(frozen=True)
class DatasetRecord:
    """The dataset as an MLflow input: plugin name, where it came from, sha256 of its data."""

    name: str
    source: str
    digest: str


def _manifest_digest(files: Mapping[str, str]) -> str:
    """One sha256 for several files: of ``"<sha256>  <name>\\n"`` lines sorted by name (the
    ``sha256sum`` format), so it is the file's own sha256 only for a single file."""
    lines = "".join(f"{sha}  {name}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _hash_path(path: Path) -> str:
    """sha256 of a user's file, or the manifest digest of the files in a user's folder."""
    from framework.data.files.fetch import sha256_of

    if path.is_dir():
        files = {str(p.relative_to(path)): sha256_of(p)
                 for p in sorted(path.rglob("*")) if p.is_file()}
        return _manifest_digest(files)
    return sha256_of(path)


def dataset_record(dataset: Any, corpus: Any) -> DatasetRecord | None:
    """The dataset's record, or None when it has no file (nothing to point at).

    The files of a built-in dataset were verified against their pinned sha256 when they were
    located (data directory, cache or download), so the pinned digests are used without reading
    the files again; only a user's own ``dataset.path`` (never checked on load) is hashed here.
    """
    name = str(getattr(dataset, "name", None) or getattr(corpus, "name", "dataset"))
    where = str(getattr(corpus, "source", "") or "")
    user_path = getattr(getattr(dataset, "cfg", None), "path", None) or getattr(
        getattr(dataset, "config", None), "path", None)
    sources = getattr(dataset, "sources", None) or ()
    single = getattr(dataset, "source", None)
    if not user_path and single is not None and not sources:
        return DatasetRecord(name, single.url, single.sha256)
    if not user_path and sources:
        digest = _manifest_digest({s.filename: s.sha256 for s in sources})
        url = sources[0].url.rsplit("/", 1)[0] + "/"  # the folder the files come from
        return DatasetRecord(name, url, digest)
    path = Path(str(user_path or where)).expanduser()
    if not str(user_path or where) or not path.exists():
        return None
    return DatasetRecord(name, str(path.resolve()), _hash_path(path))


# ------------------------------------------------------------------------------ all of it
OPTUNA_TRIAL_TAG = "rnnlab.optuna_trial"
OPTUNA_STUDY_TAG = "rnnlab.optuna_study"


def run_record(rc: Any, dataset: Any = None,
               corpus: Any = None) -> tuple[dict[str, str], dict[str, str], DatasetRecord | None]:
    """``(params, tags, dataset record)`` of a run, for :meth:`Tracker.start` and
    :meth:`Tracker.log_dataset`."""
    params = flatten_config(run_params(rc))
    tags = {**_task(rc).tags(rc), "cell": rc.cell.name, "dataset": rc.dataset.name,
            "optimizer": rc.optimizer.name, NOTE_TAG: describe(rc, corpus)}
    if rc.resume:
        tags["rnnlab.resumed_from"] = rc.resume
    # An Optuna trial's number and study: how the study's report finds the trial's run.
    if getattr(rc.optuna, "trial", None) is not None:
        tags[OPTUNA_TRIAL_TAG] = str(rc.optuna.trial)
        if rc.optuna.study_name:
            tags[OPTUNA_STUDY_TAG] = str(rc.optuna.study_name)
    record = dataset_record(dataset, corpus) if dataset is not None else None
    if record is not None:
        tags[DIGEST_TAG] = record.digest
    return params, tags, record


__all__ = ["DIGEST_TAG", "NOTE_TAG", "OPTUNA_STUDY_TAG", "OPTUNA_TRIAL_TAG", "DatasetRecord",
           "dataset_record", "describe", "param_value", "run_params", "run_record"]
