"""Sweeps as nested MLflow runs: a Hydra callback (registered in conf/config.yaml).

``python -m framework -m cell=rnn,lstm,gru optimizer.lr=0.01,0.003`` (any launcher: basic, joblib,
submitit; any sweeper: basic grid or Optuna) gives ONE parent run for the sweep and one child run
per job, nested under it in the MLflow UI.

Why a callback, and why it works like this:

* The store and the experiment are created once, in the parent process, before any job starts:
  parallel jobs opening a fresh sqlite store race on its schema, and concurrent get-or-create of a
  new experiment name misfiles runs into "Default".
* The parent run id reaches the jobs through the environment (``RNNLAB_PARENT_RUN_ID``, inherited
  by joblib/submitit workers and exported by SLURM) and a file in the sweep dir
  (``mlflow_parent_run.json``, read in ``on_job_start`` when the environment did not carry it).
  conf/config.yaml reads it as ``mlflow.parent_run_id: ${oc.env:RNNLAB_PARENT_RUN_ID,null}``.
* ``MLFLOW_RUN_ID`` left in the shell would make MLflow's fluent API log into that run; it is
  removed for the parent and every job.
* Each job writes ``rnnlab_job.json`` (status, return value) into its output dir, so the parent
  can tell failed jobs even when they never reached MLflow (bad config) or their worker died.
* Hydra does not call ``on_multirun_end`` when a job raises; an ``atexit`` hook then still writes
  the summary and ends the parent run as FAILED instead of leaving it RUNNING forever.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from framework.sweeps.outcome import (
    JOB_FILE,
    Jobs,
    count_jobs,
    progress_line,
    read_stop,
    shared_failure,
    write_stop,
)
from framework.tracking.ui_view import ui_links  # also imported from here by callers

PARENT_ENV = "RNNLAB_PARENT_RUN_ID"
RUN_NAME_ENV = "RNNLAB_RUN_NAME"
HANDOFF_FILE = "mlflow_parent_run.json"
SUMMARY_BASENAME = "sweep_summary"
PLOT_FILE = "sweep_val_loss.png"
# The one-line error of the job running in this process, set by the command line when a job of a
# sweep stops on an rnnlab error (it then returns NaN so the other jobs go on).  A job that
# returns NaN without one trained without validation (train.steps=0, val_fraction=0): not failed.
_job_error: list[str] = []
SKIPPED = "skipped: the sweep stopped at its first job"


# The last multirun this process ran, counted when it ended: the command's exit status.
finished_sweeps: list[tuple[Jobs, Path]] = []


def mark_job_failed(reason: str) -> None:
    """Record that the current sweep job stopped on ``reason`` (read by ``on_job_end``)."""
    _job_error[:] = [reason]


def job_fails(exc: BaseException) -> bool:
    """The current sweep job stopped on ``exc``: record it, and stop the sweep when it is the
    first job and every job would fail the same way (:mod:`framework.sweeps.outcome`).
    True when the sweep stops."""
    from hydra.core.hydra_config import HydraConfig

    mark_job_failed(str(exc))
    hydra = HydraConfig.get()  # the job's own config has no hydra node
    if int(hydra.job.num) != 0 or not shared_failure(exc, _swept_keys_of_job(hydra)):
        return False
    write_stop(Path(str(hydra.sweep.dir)), exc)
    return True


def sweep_stopped() -> bool:
    """Has the current job's sweep stopped? Then the job skips itself (recorded as skipped)."""
    from hydra.core.hydra_config import HydraConfig

    if read_stop(Path(str(HydraConfig.get().sweep.dir))) is None:
        return False
    _job_error[:] = [SKIPPED]
    return True


def _is_multirun(config: DictConfig) -> bool:
    from hydra.types import RunMode

    mode = OmegaConf.select(config, "hydra.mode")
    return mode == RunMode.MULTIRUN or str(mode) == "MULTIRUN"


def _short_target(config: DictConfig, key: str) -> str:
    target = OmegaConf.select(config, f"hydra.{key}._target_") or "?"
    return str(target).rsplit(".", 1)[-1]


def _swept_keys_of_job(hydra: DictConfig) -> list[str]:
    """What the sweep varies, seen from one of its jobs (whose own overrides are single values;
    ``hydra`` is the job's hydra node): from the sweep's ``multirun.yaml``; without it, every
    override of the job counts."""
    try:
        master = OmegaConf.load(Path(str(hydra.sweep.dir)) / "multirun.yaml")
        return sweep_keys(master)
    except Exception:  # no readable multirun.yaml: be conservative, stop nothing
        overrides = OmegaConf.to_container(hydra.overrides.task, resolve=False) or []
        return [str(o).split("=", 1)[0].lstrip("+~") for o in overrides]


def _preflight(config: DictConfig) -> None:
    """The checks run before anything is created: rnnlab's Optuna sweeper's own, or the first
    job's config of a grid (a value every job shares, such as ``train.steps=-3``, would fail
    every job)."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    if target.endswith("RnnlabOptunaSweeper"):
        from framework.sweeps.optuna_sweeper import preflight

        preflight(config, [str(o) for o in config.hydra.overrides.task])
    elif target.endswith(".BasicSweeper"):
        from framework.training.config import validate

        job = _first_job_config(config)
        if job is not None:
            validate(job)


def _first_job_config(config: DictConfig) -> DictConfig | None:
    """The config of a grid sweep's first job, composed as the launcher will compose it, without
    its ``hydra`` node (filled in for a job only when it runs); None when it cannot be composed
    here: the job then reports what is wrong."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        overrides = [*(f"{k}={v}" for k, v in params.items()),
                     *(str(o) for o in config.hydra.overrides.task)]
        batches = BasicSweeper.split_arguments(
            OverridesParser.create().parse_overrides(overrides), None)
        loader = GlobalHydra.instance().config_loader()
        job = loader.load_sweep_config(config, list(batches[0][0]))
        with open_dict(job):
            job.pop("hydra", None)
        return job
    except Exception:  # noqa: BLE001  (Hydra's own errors are reported by Hydra's launch)
        return None


def sweep_size(config: DictConfig) -> int | None:
    """How many jobs the sweep of this job launches: ``n_trials`` of an Optuna sweep (this
    invocation's), else the size of the grid in the sweep's ``multirun.yaml``."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    trials = OmegaConf.select(config, "hydra.sweeper.n_trials", default=None)
    if trials is not None:
        return int(trials)
    try:
        master = OmegaConf.load(Path(str(config.hydra.sweep.dir)) / "multirun.yaml")
        overrides = [str(o) for o in master.hydra.overrides.task]
        parsed = OverridesParser.create().parse_overrides(overrides)
        return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))
    except Exception:  # another sweeper or an unreadable file: the count without a total
        return None


def sweep_keys(config: DictConfig) -> list[str]:
    """The config keys that vary between jobs (sweep overrides + Optuna's search space)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False) or []
    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    if params:
        keys += [str(k) for k in params if str(k) not in keys]
    return keys


def job_label(overrides: list[str], keys: list[str], num: Any) -> str:
    """A child run's name: its job number and the values of the swept keys."""
    wanted = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") in keys:
            wanted.append(f"{key}={_short_number(value)}")
    return f"#{num} " + " ".join(wanted) if wanted else f"#{num}"


def _short_number(value: str) -> str:
    """Optuna's floats (0.016942852273718636) shortened to 4 significant digits for names."""
    if "." not in value and "e" not in value.lower():
        return value
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


class SweepCallback(Callback):
    """One MLflow parent run per sweep; jobs become its children; a summary at the end."""

    def __init__(self) -> None:
        self._tracker: Any = None
        self._sweep_dir: Path | None = None
        self._owner_pid: int | None = None
        self._saved_env: dict[str, str | None] = {}
        self._finished = False

    def __getstate__(self) -> dict[str, Any]:
        # Launchers pickle callbacks into their workers; the parent's MLflow client stays home.
        return {"_tracker": None, "_sweep_dir": self._sweep_dir, "_owner_pid": None,
                "_saved_env": {}, "_finished": True}

    # -- a single run ------------------------------------------------------------------------
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A preset that defines a sweep, run without -m, trains one job: say so."""
        import sys

        params = OmegaConf.select(config, "hydra.sweeper.params")
        if params:
            swept = "; ".join(f"{k}: {v}" for k, v in params.items())
            print(f"rnnlab: warning: this config defines a sweep ({swept}) but runs without -m, "
                  f"so only one job trains; add -m to run them all", file=sys.stderr, flush=True)

    # -- parent process ---------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from framework.errors import RnnlabError
        from framework.tracking.tracker_process import discard_prestarted

        discard_prestarted()  # a sweep preset without -m: its jobs track in their own processes
        # A worker killed under a job leaves its semaphores to multiprocessing's resource
        # tracker, which would warn about them in two lines of its own at exit: the sweep
        # already says in one line that a worker died.
        quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
        if quiet not in os.environ.get("PYTHONWARNINGS", ""):
            os.environ["PYTHONWARNINGS"] = ",".join(
                w for w in (os.environ.get("PYTHONWARNINGS", ""), quiet) if w)

        try:
            _preflight(config)  # refuse a sweep before its parent run exists
            if not OmegaConf.select(config, "mlflow.enabled", default=True):
                return
        except RnnlabError as exc:
            import sys

            from framework.errors import print_error

            print_error(exc)
            sys.exit(exc.exit_code)
        for name in ("MLFLOW_RUN_ID", PARENT_ENV, RUN_NAME_ENV):
            self._saved_env[name] = os.environ.get(name)
        os.environ.pop("MLFLOW_RUN_ID", None)
        try:
            self._start_parent(config)
        except RnnlabError as exc:
            import sys

            from framework.errors import print_error

            print_error(exc)
            sys.exit(exc.exit_code)

    def _start_parent(self, config: DictConfig) -> None:
        from framework.tracking.tracker import MlflowTracker

        # Resolving the sweep dir here fixes its ${now:...} (cached on this config) before the
        # sweeper and launcher read the same node.
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        keys = sweep_keys(config)
        overrides = [str(o) for o in config.hydra.overrides.task]
        sweeper = _short_target(config, "sweeper")
        launcher = _short_target(config, "launcher")
        swept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in keys]
        name = ("optuna " if "Optuna" in sweeper else "sweep ") + (
            " ".join(swept) if swept else " ".join(keys) or sweep_dir.name)
        mlflow = config.mlflow
        # A parent given explicitly (or by an outer sweep) nests this whole sweep under it.
        outer_parent = OmegaConf.select(config, "mlflow.parent_run_id", default=None)
        tracker = MlflowTracker(tracking_uri=str(mlflow.tracking_uri),
                                experiment_name=str(mlflow.experiment_name),
                                run_name=name[:250], log_model=False,
                                parent_run_id=outer_parent)
        params = {"sweep.overrides": " ".join(overrides), "sweep.keys": ",".join(keys),
                  "sweep.sweeper": sweeper, "sweep.launcher": launcher,
                  "sweep.dir": str(sweep_dir)}
        if "Optuna" in sweeper:
            for key in ("n_trials", "n_jobs", "direction", "study_name"):
                params[f"optuna.{key}"] = OmegaConf.select(config, f"hydra.sweeper.{key}")
            params["optuna.sampler"] = _short_target(config, "sweeper.sampler")
        run_id = tracker.start(params=params, tags={"rnnlab.sweep": "true",
                                                    "rnnlab.sweep_dir": str(sweep_dir)})
        self._tracker, self._sweep_dir, self._owner_pid = tracker, sweep_dir, os.getpid()
        self._finished = False
        os.environ[PARENT_ENV] = run_id
        handoff = {"parent_run_id": run_id, "tracking_uri": tracker.tracking_uri,
                   "experiment_name": tracker.experiment_name,
                   "experiment_id": tracker.experiment_id, "sweep_keys": keys}
        (sweep_dir / HANDOFF_FILE).write_text(json.dumps(handoff, indent=2) + "\n")
        atexit.register(self._at_exit)
        print(f"MLflow sweep parent run {run_id} ('{name}', experiment "
              f"'{tracker.experiment_name}', {tracker.tracking_uri})", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        finished_sweeps[:] = [(count_jobs(sweep_dir), sweep_dir)]
        self._finish(aborted=False)

    def _at_exit(self) -> None:
        if os.getpid() == self._owner_pid:
            self._finish(aborted=True)

    def _finish(self, *, aborted: bool) -> None:
        if self._finished or self._tracker is None or self._sweep_dir is None:
            return
        self._finished = True
        tracker, sweep_dir = self._tracker, self._sweep_dir
        status, reason = "FINISHED", None
        try:
            summary = summarize(tracker, sweep_dir)
            if aborted:
                status, reason = "FAILED", "the sweep stopped before its end (a job raised, or " \
                                           "it was interrupted)"
            elif summary["failed"]:
                status = "FAILED"
                reason = f"{summary['failed']} of {summary['jobs']} jobs failed"
            print(f"MLflow sweep parent run {tracker.run_id}: {summary['children']} child runs, "
                  f"{summary['failed']} failed; summary in {sweep_dir / SUMMARY_BASENAME}.md\n"
                  f"  runs table (MLflow UI): {summary['ui']['runs']}\n"
                  f"  compare page (MLflow UI): {summary['ui']['compare']}", flush=True)
            if summary["killed"]:
                print(killed_line(summary["killed"]), file=sys.stderr, flush=True)
        except Exception as exc:  # a summary problem must not hide the sweep's own outcome
            status, reason = "FAILED", f"sweep summary failed: {type(exc).__name__}: {exc}"
            print(f"rnnlab: warning: {reason}", flush=True)
        finally:
            tracker.end(status, reason)
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    # -- job processes (in the worker for joblib/submitit) -------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        _job_error.clear()
        os.environ.pop("MLFLOW_RUN_ID", None)
        handoff: dict[str, Any] = {}
        path = Path(str(config.hydra.sweep.dir)) / HANDOFF_FILE
        if path.is_file():
            handoff = json.loads(path.read_text())
        if not os.environ.get(PARENT_ENV) and handoff.get("parent_run_id"):
            os.environ[PARENT_ENV] = handoff["parent_run_id"]
        keys = handoff.get("sweep_keys") or sweep_keys(config)
        overrides = [str(o) for o in config.hydra.overrides.task]
        # An Optuna trial's run is named after its trial number (unique across invocations).
        num = OmegaConf.select(config, "optuna.trial", default=None)
        os.environ[RUN_NAME_ENV] = job_label(overrides, keys,
                                             config.hydra.job.num if num is None else num)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        from hydra.core.utils import JobStatus

        value = job_return._return_value  # .return_value re-raises a failed job's exception
        ok = job_return.status == JobStatus.COMPLETED
        error = None if ok else f"{type(value).__name__}: {value}"
        if ok and _job_error:
            error = _job_error[0]
        skipped = error == SKIPPED
        record = {"num": int(config.hydra.job.num), "status": job_return.status.name,
                  "return_value": float(value) if ok and isinstance(value, (int, float)) else None,
                  "failed": error is not None and not skipped, "skipped": skipped,
                  "error": None if skipped else error,
                  "overrides": [str(o) for o in config.hydra.overrides.task]}
        out = Path(str(config.hydra.runtime.output_dir)) / JOB_FILE
        out.write_text(json.dumps(record, indent=2) + "\n")
        if not skipped:
            print(progress_line(Path(str(config.hydra.sweep.dir)), sweep_size(config)),
                  flush=True)


# ------------------------------------------------------------------------------------ summary
def killed_line(run_ids: Sequence[str]) -> str:
    """What the sweep says of child runs it ended KILLED because their job's process was gone."""
    shown = ", ".join(run_ids[:5]) + (", ..." if len(run_ids) > 5 else "")
    return (f"rnnlab: warning: {len(run_ids)} child run(s) were left RUNNING by a job whose "
            f"process was killed ({shown}); they are now marked KILLED, and their checkpoints "
            f"are in their job folders")


def summarize(tracker: Any, sweep_dir: Path) -> dict[str, Any]:
    """Log the sweep's table (md+csv), val-loss plot and Optuna result to the parent run."""
    from framework.figures import save_figure
    from framework.tracking.plots import loss_curve_figure
    from framework.tracking.run_table import build_table, child_runs

    client, parent_id = tracker.client, tracker.run_id
    counted = count_jobs(sweep_dir)
    jobs, failed_jobs = counted.total, counted.failed
    children = child_runs(client, parent_id, [tracker.experiment_id], expected=jobs)
    # Every job is done: a child still RUNNING whose process is gone was killed (kill -9, a
    # launcher's worker that died) and nothing else would ever end it.
    from framework.tracking.run_owner import settle_abandoned

    killed = settle_abandoned(client, children)
    if killed:
        children = child_runs(client, parent_id, [tracker.experiment_id], expected=jobs)
    table = build_table(children, title=str(tracker.run_name or f"sweep {parent_id}"))
    for fmt, ext in (("markdown", "md"), ("csv", "csv")):
        text = table.render(fmt)
        (sweep_dir / f"{SUMMARY_BASENAME}.{ext}").write_text(text)
        tracker.log_text(text, f"{SUMMARY_BASENAME}.{ext}")
    curves = {}
    for row in table.rows:
        history = client.get_metric_history(row["run_id"], "val_loss")
        curves[row["run"] or row["run_id"][:8]] = sorted((m.step, m.value) for m in history)
    figure = loss_curve_figure(curves, title="validation loss of the sweep's runs")
    save_figure(figure, sweep_dir / PLOT_FILE)
    tracker.log_figure(figure, PLOT_FILE)

    # A pruned Optuna trial ends KILLED on purpose: neither a failure nor a candidate for best.
    from framework.sweeps.optuna_trial import PRUNED_TAG

    pruned = {c.info.run_id for c in children if PRUNED_TAG in c.data.tags}
    failed_runs = sum(r["status"] != "FINISHED" and r["run_id"] not in pruned
                      for r in table.rows)
    failed = max(failed_jobs, failed_runs)
    metrics = {"sweep_jobs": float(jobs), "sweep_children": float(len(children)),
               "sweep_failed": float(failed), "sweep_pruned": float(len(pruned))}
    # The table is ranked by the task's first metric (val_loss, val_accuracy, val_rmse, ...).
    ranked_by = table.metrics[0]
    best = next((r for r in table.rows if r["run_id"] not in pruned
                 and math.isfinite(r[ranked_by])), None)
    tags: dict[str, Any] = {}
    if best is not None:
        metrics[f"best_{ranked_by}"] = best[ranked_by]
        if math.isfinite(best["val_loss"]):
            metrics["best_val_loss"] = best["val_loss"]
        tags.update({"rnnlab.best_run_id": best["run_id"], "rnnlab.best_run": best["run"]})
    # The Optuna study (when the sweeper was rnnlab's): best trial, plots, importances, trials.
    from framework.sweeps.optuna_report import log_study

    metrics.update(log_study(tracker, sweep_dir, children))
    from framework.tasks.base import DEFAULT_TASK, task_of_run

    tasks = {task_of_run(c.data.tags) for c in children}
    view_key = save_ui_view(tracker, table, tasks.pop() if len(tasks) == 1 else DEFAULT_TASK,
                            children)
    if view_key:
        tags["rnnlab.ui_view"] = view_key
    tracker.log_metrics(metrics, step=0)
    if tags:
        tracker.set_tags(tags)
    return {"jobs": jobs, "children": len(children), "failed": failed, "killed": killed,
            "table": table,
            "ui": ui_links(tracker.tracking_uri, tracker.experiment_id, view_key,
                           [r["run_id"] for r in table.rows])}


def save_ui_view(tracker: Any, table: Any, task: str | None = None,
                 children: Sequence[Any] = ()) -> str | None:
    """Store the sweep's shared view (:mod:`framework.tracking.ui_view`): its children only,
    ranked by val_loss, with the differing params and the task's metrics as columns, the first
    metric also with the decimals that tell the ``children`` apart."""
    from framework.tasks.base import DEFAULT_TASK
    from framework.tracking.ui_view import mark_exact, metric_columns, save_view

    metrics = metric_columns(task or DEFAULT_TASK)
    tags = [mark_exact(tracker.client, children, metrics[0])] if children else []
    return save_view(tracker.client, tracker.experiment_id, f"sweep-{tracker.run_id[:8]}",
                     params=table.params, metrics=metrics, tags=tags,
                     search_filter=f"tags.`mlflow.parentRunId` = '{tracker.run_id}'",
                     order_by="metrics.`val_loss`", ascending=True)


__all__ = ["SweepCallback", "job_label", "killed_line", "save_ui_view", "summarize",
           "sweep_keys", "ui_links"]
