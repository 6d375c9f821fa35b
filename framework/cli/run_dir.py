"""A refused command leaves no folder behind: the run (or sweep) folder Hydra made is removed.

Hydra creates ``outputs/<date>/<time>/`` (with ``.hydra/`` and the log file) before the job
starts, and most refusals (a dataset file that is missing, a model too large for the memory, an
unusable tracking store) can only be found once the job reads its config. :class:`RunDirCallback`
(conf/config.yaml's ``hydra.callbacks``) notes, just before Hydra makes the run folder, which of
its folders do not exist yet; a job that ends with a one-line refusal calls
:func:`remove_unused_run_dir`, which removes what this process created as long as it holds
nothing but Hydra's own files (``.hydra/``, the log, the job's lock). A folder that existed before
(``resume=`` into a run folder, a ``hydra.run.dir`` given by the user) is never removed, and
neither is one that holds anything else (a checkpoint, the note of an MLflow run). A ``-m`` sweep
stopped by its first job's refusal (one every job would share) is treated alike through
:func:`remove_unused_sweep_dir`: its folder goes when every job folder in it is unused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# What a run folder holds before the job has done any work.
HYDRA_ONLY = frozenset({".hydra", "train.log", ".rnnlab.lock"})
# What a sweep folder holds besides its job folders before any job has done work: Hydra's
# multirun.yaml, and the sweep's notes of its jobs (framework/sweeps/outcome.py).
SWEEP_ONLY = frozenset({"multirun.yaml", "rnnlab_sweep_stopped.json"})
JOB_NOTES = frozenset({"rnnlab_job.json"})

_created: dict[str, Path] = {}  # run/sweep folder -> the outermost folder about to be created


def first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None: it exists)."""
    folder = Path(os.path.realpath(folder))
    if folder.exists():
        return None
    missing = folder
    while not missing.parent.exists() and missing.parent != missing:
        missing = missing.parent
    return missing


def _note(config: DictConfig, key: str) -> None:
    # realpath: the job and the sweep callback may name the folder through a symlinked path.
    value = OmegaConf.select(config, key)  # ${now:} is cached: the path Hydra makes next
    if value is None:
        return
    folder = Path(os.path.realpath(str(value)))
    missing = first_missing(folder)
    if missing is not None:
        _created[str(folder)] = missing


class RunDirCallback(Callback):
    """Notes which folders of ``hydra.run.dir`` (a single run) or ``hydra.sweep.dir`` (``-m``)
    this process is about to make. Listed first in ``hydra.callbacks``: its start hooks run
    before the sweep callback makes the sweep folder."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _note(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _note(config, "hydra.sweep.dir")


def _names(folder: Path) -> dict[str, bool] | None:
    """``{name: is a folder}`` of ``folder``'s entries, None when it cannot be read."""
    try:
        return {e.name: e.is_dir(follow_symlinks=False) for e in os.scandir(folder)}
    except OSError:
        return None


def holds_only_hydra_files(folder: Path, also: frozenset[str] = frozenset()) -> bool:
    """True when ``folder`` holds nothing but what Hydra and the job's start put there."""
    names = _names(folder)
    return names is not None and set(names) <= HYDRA_ONLY | also


def sweep_is_unused(folder: Path) -> bool:
    """True when a sweep folder holds only Hydra's files and job folders in which no job did
    any work."""
    names = _names(folder)
    if names is None:
        return False
    return all(name in SWEEP_ONLY if not is_dir else
               holds_only_hydra_files(folder / name, JOB_NOTES)
               for name, is_dir in names.items())


def remove_unused_run_dir(run_dir: Path) -> bool:
    """Remove ``run_dir`` and the folders above it that this process created for it, when the
    job did no work there; True when it was removed. Folders above are removed only while they
    are empty (another job may have started in ``outputs/<date>/`` meanwhile)."""
    return _remove(Path(os.path.realpath(run_dir)), holds_only_hydra_files)


def remove_unused_sweep_dir(sweep_dir: Path) -> bool:
    """:func:`remove_unused_run_dir` for a ``-m`` sweep's folder."""
    return _remove(Path(os.path.realpath(sweep_dir)), sweep_is_unused)


def _remove(folder: Path, unused: Any) -> bool:
    top = _created.pop(str(folder), None)
    if top is None or not unused(folder):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        return False
    current = folder.parent
    while current != top.parent and current.is_relative_to(top):
        try:
            current.rmdir()
        except OSError:  # not empty (another job's folder), or gone already
            break
        current = current.parent
    return True


__all__ = ["RunDirCallback", "first_missing", "holds_only_hydra_files", "remove_unused_run_dir",
           "remove_unused_sweep_dir", "sweep_is_unused"]
