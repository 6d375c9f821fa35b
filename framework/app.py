"""The Hydra application behind ``python -m framework``: validate, train, log to MLflow.

MLflow is imported lazily (inside the tracker) so that ``--help`` and config errors are instant.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from framework.config import RunConfig, validate
from framework.errors import ConfigError, RnnlabError
from framework.overrides import (
    CONF,
    debug_mode,
    precheck_overrides,
    print_error,
    run_hydra,
    store_plugin_configs,
)
from framework.ray_support import precheck_launcher


def _progress(rc: RunConfig, initial: int) -> Any:
    from tqdm import tqdm

    mode = rc.train.progress
    disable = {"auto": None, "always": False, "never": True}[mode]  # None: only on a terminal
    return tqdm(total=rc.train.steps, initial=initial, disable=disable, unit="step",
                dynamic_ncols=True, leave=False, file=sys.stderr)


def _output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside Hydra (tests, course API)
        return Path.cwd()


def _finish(tracker: Any, trainer: Any, result: Any, out_dir: Path, cfg_yaml: str) -> None:
    """Log the run's artifacts: config, .hydra/, samples, loss curve, checkpoints, the model."""
    from framework.plots import loss_curve_figure

    # The whole run's throughput (chars_per_sec is per logging window), read by sweep summaries
    # and `python -m framework.compare`.
    tracker.log_metrics({"run_chars_per_sec": result.chars_per_sec}, result.steps)
    tracker.log_text(cfg_yaml, "config.yaml")
    hydra_dir = out_dir / ".hydra"
    if hydra_dir.is_dir():
        tracker.log_artifacts(str(hydra_dir), ".hydra")
    tracker.log_text("\n".join(result.samples) + "\n", "samples.txt")
    if any(result.history.values()):
        figure = loss_curve_figure(result.history)
        tracker.log_figure(figure, "loss_curve.png")
    for path in (result.final_checkpoint, result.best_checkpoint):
        if path is not None and Path(path).is_file():
            tracker.log_artifact(str(path), "checkpoints")
    if trainer.rc.mlflow.log_model and result.final_checkpoint is not None:
        tracker.log_model(str(result.final_checkpoint))


def _claim_output_dir(out_dir: Path) -> Any:
    """Lock the job's output directory for as long as the returned file stays open.

    Two live jobs writing one checkpoints/ folder would log each other's checkpoints to MLflow;
    the second one is refused instead.  (The kernel drops the lock when a job dies, even by
    kill -9, so a later job - a resume - can use the directory again.)
    """
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / ".rnnlab.lock", "a+")  # held open until the run ends
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(f"output directory {out_dir} is in use by another running rnnlab job; "
                          f"give each job its own hydra.run.dir") from None
    return handle


def _sigterm_interrupts() -> Callable[[], None]:
    """Make SIGTERM raise KeyboardInterrupt (like Ctrl-C) so the MLflow run is still ended as
    KILLED when it arrives outside the training loop; returns the function that undoes it.

    Inside the loop the trainer's SignalGuard takes over and stops after the step, with a
    checkpoint.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handle)
    return lambda: signal.signal(signal.SIGTERM, previous)


def run(cfg: DictConfig) -> float:
    """Train one configuration; returns the final validation loss (what sweepers minimise)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our bar is enough
    from framework.resume import resolve
    from framework.tracking import Tracker, flatten_config
    from framework.trainer import Interrupted, Reporter, Trainer, print_line

    rc = validate(cfg)
    out_dir = _output_dir()
    tracker = Tracker.from_config(rc.mlflow)
    # Data and model first (a bad dataset path must not leave an empty MLflow run behind), then
    # the tracking store, both before the first training step.
    trainer = Trainer(rc, out_dir=out_dir, reporter=Reporter(tracker, print_line))
    tracker.check_reachable()
    if rc.resume:
        checkpoint = resolve(rc.resume, download=tracker.download_checkpoint)
        trainer.restore(checkpoint)
        print_line(f"resumed from {checkpoint} at step {trainer.step}")
    tags = {"cell": rc.cell.name, "dataset": rc.dataset.name, "optimizer": rc.optimizer.name}
    if rc.resume:
        tags["rnnlab.resumed_from"] = rc.resume
    lock = _claim_output_dir(out_dir)  # before the MLflow run: a refused job leaves none behind
    status, reason = "FAILED", None
    restore_sigterm = _sigterm_interrupts()
    try:
        run_id = tracker.start(params=flatten_config(rc.raw), tags=tags)
        if run_id:
            print_line(f"MLflow run {run_id} (experiment '{rc.mlflow.experiment_name}', "
                       f"{rc.mlflow.tracking_uri})")
        with _progress(rc, trainer.step) as bar:
            result = trainer.run(bar)
        cfg_yaml = OmegaConf.to_yaml(OmegaConf.create(rc.raw))
        _finish(tracker, trainer, result, out_dir, cfg_yaml)
        print_line(f"done: {result.steps} steps, val loss {result.final_val_loss:.4f} nats/char "
                   f"({result.final_val_loss / math.log(2):.4f} bits/char), "
                   f"{result.chars_per_sec:,.0f} chars/s; checkpoint {result.final_checkpoint}")
        status = "FINISHED"
        return float(result.final_val_loss)
    except Interrupted as exc:
        status, reason = "KILLED", str(exc)
        if exc.checkpoint is not None:
            tracker.log_artifact(str(exc.checkpoint), "checkpoints")
        raise
    except RnnlabError as exc:
        reason = str(exc)
        raise
    except KeyboardInterrupt:  # Ctrl-C/SIGTERM outside the loop, or a second signal inside it
        status, reason = "KILLED", "interrupted before a checkpoint could be written"
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        tracker.end(status, reason)
        restore_sigterm()
        lock.close()


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
    from framework.trainer import Interrupted

    try:
        return run(cfg)
    except Interrupted as exc:
        where = (f"; checkpoint saved, continue with resume={exc.checkpoint}"
                 if exc.checkpoint else "")
        print(f"rnnlab: {exc}{where}", file=sys.stderr)
        sys.exit(128 + exc.signum)
    except RnnlabError as exc:
        print_error(exc)
        if _is_multirun():
            return math.nan  # one bad job must not abort the rest of the sweep
        sys.exit(exc.exit_code)


def main() -> None:
    try:
        precheck_overrides(sys.argv[1:])
        precheck_launcher(sys.argv[1:])
        store_plugin_configs()
        run_hydra(hydra_main)  # Hydra's own override errors (train.stepz=5) become one line too
    except RnnlabError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (loading data, logging)
        if debug_mode():
            raise
        print("rnnlab: interrupted", file=sys.stderr)
        sys.exit(130)
