"""The Hydra application behind ``python -m framework``: validate, train, log to MLflow.

MLflow is imported lazily (inside the tracker) so that ``--help`` and config errors are instant.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from framework.cli.console import console_copied_to, file_error, print_error, run_command
from framework.cli.overrides import (
    CONF,
    precheck_overrides,
    run_hydra,
    store_plugin_configs,
)
from framework.errors import RnnlabError
from framework.training.config import RunConfig, validate
from framework.training.runtime import (
    Interrupted,
    StopSignals,
    blas_threads,
    claim_output_dir,
    keep_freed_memory,
)


def _progress(rc: RunConfig, initial: int) -> Any:
    from framework.training.progress import progress

    return progress(rc.train.progress, rc.train.steps, initial, every=rc.train.status_every)


def _output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside Hydra (tests, course API)
        return Path.cwd()


def _finish(tracker: Any, trainer: Any, result: Any, out_dir: Path, stop: StopSignals) -> None:
    """Log the run's artifacts: config, .hydra/, samples, loss curve, checkpoints, the model.

    A stop signal skips whatever is left (the checkpoint is already on disk) and raises
    :class:`Interrupted` naming it.
    """
    rc = trainer.rc

    def log_task_artifacts() -> None:
        for path in trainer.task.final_artifacts(trainer, out_dir / "artifacts"):
            tracker.log_artifact(str(path), "results")

    def log_model() -> None:
        if rc.mlflow.log_model and result.final_checkpoint is not None:
            tracker.log_model(str(result.final_checkpoint))

    def log_curve() -> None:
        if any(result.history.values()):
            tracker.log_loss_curve(result.history, "loss_curve.png")

    hydra_dir = out_dir / ".hydra"
    steps = [
        # The whole run's throughput (chars_per_sec is per logging window), read by sweep
        # summaries and `python -m framework.compare`.
        lambda: tracker.log_metrics({"run_chars_per_sec": result.chars_per_sec}, result.steps),
        lambda: tracker.log_text(OmegaConf.to_yaml(OmegaConf.create(rc.to_dict())), "config.yaml"),
        lambda: hydra_dir.is_dir() and tracker.log_artifacts(str(hydra_dir), ".hydra"),
        lambda: tracker.log_text("\n".join(result.samples) + "\n", "samples.txt"),
        log_curve,
        log_task_artifacts,
        *[(lambda p=path: tracker.log_artifact(str(p), "checkpoints"))
          for path in (result.final_checkpoint, result.best_checkpoint)
          if path is not None and Path(path).is_file()],
        log_model,
    ]
    for log_one in steps:
        if stop.requested:
            raise Interrupted(stop.signum, result.final_checkpoint)
        log_one()


def done_line(rc: RunConfig, result: Any, task: Any, vocab: Any) -> str:
    """The last line of a run: steps, validation metrics (or why there are none), speed,
    checkpoint."""
    if rc.train.steps == 0:
        return "done: train.steps=0, nothing was trained and no checkpoint was written"
    if result.final_metrics:
        metrics = task.summary(result.final_metrics, vocab)
    elif getattr(rc.dataset, "val_fraction", None) == 0:
        metrics = "no validation (dataset.val_fraction=0)"
    else:
        metrics = "no validation (the validation split gave no batch)"
    steps = f"{result.steps} step" + ("" if result.steps == 1 else "s")
    stopping = getattr(result, "early_stop", None)  # why early stopping ended it, if it was on
    stopping = f"; {stopping}" if stopping else ""
    return (f"done: {steps}, {metrics}, {result.chars_per_sec:,.0f} "
            f"{task.throughput_unit(vocab)}/s{stopping}; checkpoint {result.final_checkpoint}")


def files_line(out_dir: Path, since: float) -> str | None:
    """Every file the run wrote into its folder since ``since`` (a time.time()): checkpoints,
    plots, tables, MIDI files, its log; not the stores an MLflow or Optuna database keeps there.
    None when it wrote none."""
    stores = {"mlartifacts", "mlruns"}
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*")
                   if p.is_file() and p.name != ".rnnlab.lock" and p.suffix != ".db"
                   and not ({".hydra", *stores} & set(p.relative_to(out_dir).parts))
                   and p.stat().st_mtime >= since)
    return f"files in {out_dir}: {', '.join(files)}" if files else None


RUN_FILE = "mlflow_run.json"  # in a run's output folder: which MLflow run its checkpoints feed


def remember_run(out_dir: Path, run_id: str, tracking_uri: str) -> None:
    """Note the run's id beside its checkpoints, so that ``resume=`` continues the same run."""
    import json

    try:
        (out_dir / RUN_FILE).write_text(json.dumps({"run_id": run_id,
                                                    "tracking_uri": tracking_uri}) + "\n")
    except OSError:  # a read-only folder fails the checkpoints with its own message
        pass


def run_of_checkpoint(target: str, checkpoint: Path, tracking_uri: str) -> str | None:
    """The MLflow run a resumed job continues: the run id given as ``resume=``, else the run
    noted in the checkpoint's output folder (same tracking store only), else None."""
    from framework.training.checkpoint import RUN_ID

    if RUN_ID.match(str(target)):
        return str(target)
    for folder in (Path(checkpoint).parent.parent, Path(checkpoint).parent):
        noted = noted_run(folder, tracking_uri)
        if noted is not None:
            return noted
    return None


def noted_run(folder: Path, tracking_uri: str) -> str | None:
    """The MLflow run (of ``tracking_uri``) an earlier job noted in ``folder``, or None."""
    import json

    from framework.training.checkpoint import RUN_ID

    try:
        noted = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(noted, dict) and noted.get("tracking_uri") == tracking_uri and \
            RUN_ID.match(str(noted.get("run_id", ""))):
        return str(noted["run_id"])
    return None


def run(cfg: DictConfig) -> float:
    """Train one configuration; returns what a sweeper optimises (the task objective, or an
    Optuna trial's optuna.objective)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our bar is enough
    from framework.sweeps.optuna_trial import PRUNED_TAG, open_trial
    from framework.tracking.run_info import run_record
    from framework.tracking.tracker_process import open_tracker
    from framework.tracking.ui_view import columns_of, ui_base
    from framework.training.checkpoint import resolve_checkpoint
    from framework.training.trainer import Pruned, Reporter, Trainer, print_line

    rc = validate(cfg)
    out_dir = _output_dir()
    started = time.time() - 1.0  # file times have a coarse clock on some filesystems
    with StopSignals() as stop:
        with stop.raising():  # nothing to save or end yet: a signal simply stops
            tracker = open_tracker(rc.mlflow, multirun=_is_multirun())
            # Data and model first (a bad dataset path must not leave an empty MLflow run
            # behind), then the tracking store, both before the first training step.
            trainer = Trainer(rc, out_dir=out_dir, reporter=Reporter(tracker, print_line))
            tracker.check_reachable()
            continue_run = None
            if rc.resume:
                checkpoint = resolve_checkpoint(rc.resume, download=tracker.download_checkpoint)
                trainer.restore(checkpoint)
                print_line(f"resumed from {checkpoint} at step {trainer.step}")
                continue_run = run_of_checkpoint(rc.resume, checkpoint, rc.mlflow.tracking_uri)
            lock = claim_output_dir(out_dir)  # before the run: a refused job leaves none behind
            # An Optuna trial (hparams_search=optuna) reports every eval; its pruner may stop it.
            trial = open_trial(rc.optuna, trainer.task)
            if trial is not None:
                trainer.eval_hook = trial.on_eval
        keep_freed_memory()
        status, reason = "FAILED", None
        try:
            params, tags, dataset = run_record(rc, trainer.dataset, trainer.corpus)

            def announce(run_id: str) -> None:  # now, or once a helper process has the run
                how = " continued" if run_id == continue_run else ""
                experiment = getattr(tracker, "experiment_id", None)
                page = (f": {ui_base(rc.mlflow.tracking_uri)}/#/experiments/{experiment}/runs/"
                        f"{run_id}" if experiment else "")
                print_line(f"MLflow run {run_id}{how} (experiment "
                           f"'{rc.mlflow.experiment_name}', {rc.mlflow.tracking_uri}){page}")
                remember_run(out_dir, run_id, rc.mlflow.tracking_uri)

            tracker.start(params=params, tags=tags, on_start=announce, continue_run=continue_run,
                          previous_run=noted_run(out_dir, rc.mlflow.tracking_uri))
            tracker.log_dataset(dataset)  # after start, in order (also through the helper)
            with blas_threads(rc.threads), _progress(rc, trainer.step) as bar:
                result = trainer.run(bar, stop=stop)
            _finish(tracker, trainer, result, out_dir, stop)
            link = None
            try:  # waits for a helper process: the run is announced and its files written
                link = tracker.ui_link(rc.task.name, columns_of(trainer.task.compare_metrics))
            finally:
                written = files_line(out_dir, started)
                if written:
                    print_line(written)
                print_line(done_line(rc, result, trainer.task, trainer.vocab))
            if link:
                print_line(f"MLflow UI (runs of this task, metrics and key options as columns): "
                           f"{link}")
            status = "FINISHED"
            if trial is not None:  # an Optuna trial: the objective its study optimises, as
                if result.best_step is not None:  # of the model restored by early stopping
                    return float(trial.value(result.best_step, result.final_metrics))
                return float(trial.last_value)  # reported at the last eval (the last step's)
            # What a sweeper optimises: the task's objective (val_loss for the language model).
            return float(result.final_metrics.get(trainer.task.objective, math.nan))
        except Pruned as exc:  # an Optuna trial stopped early: KILLED, tagged, checkpoint kept
            status, reason = "KILLED", str(exc)
            tracker.set_tags({PRUNED_TAG: exc.step})
            if exc.checkpoint is not None:
                tracker.log_artifact(str(exc.checkpoint), "checkpoints")
            print_line(f"pruned at step {exc.step} (trial {trial.number}, {rc.optuna.objective} "
                       f"{trial.last_value:.4f}); checkpoint {exc.checkpoint}")
            return trial.pruned(exc.step)
        except Interrupted as exc:
            status, reason = "KILLED", str(exc)
            if exc.checkpoint is not None:
                tracker.log_artifact(str(exc.checkpoint), "checkpoints")
            raise
        except RnnlabError as exc:
            reason = str(exc)
            raise
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            tracker.end(status, reason)
            lock.close()
            _unlogged(tracker, status, out_dir)


def _unlogged(tracker: Any, status: str, out_dir: Path) -> None:
    """A run the store did not record completely: the command fails at the end, saying what
    is missing (a run that failed anyway says it as a warning)."""
    from framework.errors import TrackingIncomplete
    from framework.tracking.tracker import redact_url

    missing = tracker.unlogged()
    if not missing:
        return
    error = TrackingIncomplete(
        f"the MLflow store {redact_url(tracker.tracking_uri)} did not record {missing}; the run's "
        f"checkpoints and train.log in {out_dir} are complete")
    if status != "FINISHED":
        print(f"rnnlab: warning: {error}", file=sys.stderr)
        return
    raise error


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


# An absolute config path: a relative one is read as a Python package when run with `-m`.
@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float:
    if _is_multirun():
        from framework.sweeps.nested_runs import sweep_stopped

        if sweep_stopped():
            return math.nan
    with console_copied_to(_output_dir() / "train.log"):  # the run folder keeps its console
        return _job(cfg)


def _job(cfg: DictConfig) -> float:
    """One training job; a sweep's failed job returns NaN so that the others go on."""
    try:
        try:
            return run(cfg)
        except OSError as exc:  # a path no check caught: one line naming it, not Hydra's folder
            raise file_error(exc) from None
    except Interrupted as exc:
        where = (f"; checkpoint saved, continue with resume={exc.checkpoint}" if exc.checkpoint
                 else "; no checkpoint was written (it stopped before the first step)")
        print(f"rnnlab: {exc}{where}", file=sys.stderr)
        sys.exit(128 + exc.signum)
    except RnnlabError as exc:
        if _is_multirun():
            from framework.sweeps.nested_runs import job_fails

            # A failure every job would share stops the sweep; the command's last line says it.
            if not job_fails(exc):
                print_error(exc)
            return math.nan  # one bad job must not abort the rest of the sweep
        print_error(exc)
        from framework.cli.run_dir import remove_unused_run_dir

        remove_unused_run_dir(_output_dir())  # a refusal before any work leaves no folder
        sys.exit(exc.exit_code)


def _fail_if_jobs_failed() -> None:
    """A sweep with failed jobs is a failed command: its exit status and last line say so."""
    from framework.sweeps.nested_runs import finished_sweeps
    from framework.sweeps.outcome import final_error, read_stop

    # Taken, not read: the outcome belongs to this command only (a later command in the same
    # process, such as an in-process test, must not see it).
    finished, finished_sweeps[:] = list(finished_sweeps), []
    for jobs, sweep_dir in finished:
        error = final_error(jobs, sweep_dir)
        if error is not None:
            if read_stop(sweep_dir) is not None:  # refused at its first job, before any work
                from framework.cli.run_dir import remove_unused_sweep_dir

                remove_unused_sweep_dir(sweep_dir)
            raise error


def main() -> None:
    def body() -> None:
        from framework.sweeps.optuna_sweeper import register_plugin
        from framework.sweeps.outcome import worker_lost
        from framework.sweeps.ray_launcher import precheck_launcher

        precheck_overrides(sys.argv[1:])
        precheck_launcher(sys.argv[1:])
        store_plugin_configs()
        register_plugin()  # hydra/sweeper=optuna under an editable install (see there)
        try:
            run_hydra(hydra_main)  # Hydra's own override errors (train.stepz=5): one line too
        except Exception as exc:  # a launcher's worker killed under a job: one line too
            lost = worker_lost(exc)
            if lost is None:
                raise
            raise lost from None
        _fail_if_jobs_failed()

    code = run_command(body)
    if code:
        sys.exit(code)
