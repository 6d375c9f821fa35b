"""How a sweep ends: a failure every job shares stops it at its first job; failed jobs fail it.

The contract, the same for every sweeper (basic grid, Optuna) and launcher:

* A job that stops on one of rnnlab's one-line errors is a failed job; the others go on.
* When the *first* job of a sweep fails with an error that does not depend on what the sweep
  varies (the message names none of the swept keys: a missing data file, an unwritable folder),
  every job would fail the same way, so the sweep stops there instead of launching them all.
* A sweep with failed jobs exits non-zero, and its last line says how many failed and the first
  reason.

Jobs report their outcome in ``rnnlab_job.json`` files in their output dirs (they may run in other
processes); the parent counts them when the multirun ends (:func:`count_jobs`).  A stopped sweep
leaves ``rnnlab_sweep_stopped.json`` in the sweep dir: the jobs after the first see it and skip
themselves (they may run in other processes too), and the command ends with the first job's error.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.errors import ConfigError, DataError, RnnlabError, StorageError

JOB_FILE = "rnnlab_job.json"
STOP_FILE = "rnnlab_sweep_stopped.json"
# Errors a job's own swept values cannot explain when the message names none of them.
_SHARED_KINDS = (ConfigError, DataError, StorageError)


class SweepFailed(RnnlabError):
    """Some jobs of a sweep failed (the others' results are still recorded)."""

    exit_code = 1


@dataclass(frozen=True)
class Jobs:
    total: int
    failed: int
    first_error: str | None
    skipped: int = 0


def read_job_record(path: Path) -> dict[str, Any] | None:
    """A job's ``rnnlab_job.json``, or None when it is missing or unreadable (a crashed job)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def job_failed(record: dict[str, Any] | None) -> bool:
    if record is None:
        return True  # a job that left no record crashed or was killed
    if "failed" in record:  # NaN alone is a run without validation, not a failure
        return bool(record["failed"]) or record.get("status") != "COMPLETED"
    value = record.get("return_value")  # a record of an older rnnlab: NaN meant an error
    return record.get("status") != "COMPLETED" or value is None or not math.isfinite(value)


def count_jobs(sweep_dir: Path) -> Jobs:
    """Jobs and failed jobs of the sweep in ``sweep_dir`` (every job dir has a ``.hydra``)."""
    total = failed = skipped = 0
    first: tuple[int, str] | None = None
    for hydra_dir in sorted(Path(sweep_dir).rglob(".hydra")):
        if not (hydra_dir / "overrides.yaml").is_file():
            continue
        total += 1
        record = read_job_record(hydra_dir.parent / JOB_FILE)
        if record is not None and record.get("skipped"):
            skipped += 1
        elif job_failed(record):
            failed += 1
            num = int(record.get("num", total)) if record else total
            reason = (record or {}).get("error") or "the job ended without a result"
            if first is None or num < first[0]:
                first = (num, str(reason))
    return Jobs(total, failed, first[1] if first else None, skipped)


def progress_line(sweep_dir: Path, total: int | None) -> str:
    """``sweep: 3 of 6 jobs done (1 failed), 1 running, 2 left`` from the job dirs: a job dir
    without a record is a job still running."""
    started = done = failed = 0
    for hydra_dir in Path(sweep_dir).rglob(".hydra"):
        if not (hydra_dir / "overrides.yaml").is_file():
            continue
        started += 1
        record = read_job_record(hydra_dir.parent / JOB_FILE)
        if record is not None:
            done += 1
            failed += job_failed(record) and not record.get("skipped")
    running = started - done
    of = f" of {total}" if total else ""
    left = f", {max(total - started, 0)} left" if total else ""
    return f"sweep: {done}{of} jobs done ({failed} failed), {running} running{left}"


def shared_failure(exc: BaseException, swept_keys: list[str]) -> bool:
    """Would every job of the sweep fail like this? True for a config, data or storage error
    whose message names none of the keys the sweep varies."""
    if not isinstance(exc, _SHARED_KINDS):
        return False
    text = str(exc)
    return not any(re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", text) for key in swept_keys)


def write_stop(sweep_dir: Path, exc: RnnlabError) -> None:
    """Stop the sweep in ``sweep_dir`` after its first job failed with ``exc``."""
    record = {"error": str(exc), "exit_code": int(exc.exit_code)}
    (Path(sweep_dir) / STOP_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")


def read_stop(sweep_dir: Path) -> RnnlabError | None:
    """The error that stopped the sweep in ``sweep_dir``, or None while it goes on."""
    record = read_job_record(Path(sweep_dir) / STOP_FILE)
    if record is None:
        return None
    error = RnnlabError(f"{record.get('error')} (the sweep's first job failed, and every job "
                        f"would fail the same way: the sweep stopped there)")
    error.exit_code = int(record.get("exit_code", RnnlabError.exit_code))
    return error


def failed_message(jobs: Jobs, sweep_dir: Path) -> str:
    return (f"{jobs.failed} of {jobs.total} jobs of the sweep failed (first: "
            f"{jobs.first_error}); their outputs are in {sweep_dir}")


# A launcher's worker process died under a job (kill -9, the kernel's out-of-memory killer):
# joblib's loky and Ray raise these, by class name (neither is imported for this).
_WORKER_LOST = ("TerminatedWorkerError", "BrokenProcessPool", "WorkerCrashedError",
                "ActorDiedError", "RayActorError", "NodeDiedError")


def worker_lost(exc: BaseException) -> SweepFailed | None:
    """The one line for a sweep whose launcher lost a worker process under a job (None for any
    other exception): the sweep stopped; its runs are settled as it ends."""
    if type(exc).__name__ not in _WORKER_LOST:
        return None
    codes = re.search(r"\{(SIG\w+\(-?\d+\)(?:, SIG\w+\(-?\d+\))*)\}", str(exc))
    how = f", exit {codes.group(1)}" if codes else ""
    return SweepFailed(f"a worker process of the sweep's launcher died under a job "
                       f"({type(exc).__name__}{how}); the sweep stopped: the process was killed "
                       f"or ran out of memory (the jobs' train.log files and the system log "
                       f"say which)")


def final_error(jobs: Jobs, sweep_dir: Path) -> RnnlabError | None:
    """What the sweep command ends with: the stopping error, the failed jobs' count, or None."""
    stop = read_stop(sweep_dir)
    if stop is not None:
        return stop
    return SweepFailed(failed_message(jobs, sweep_dir)) if jobs.failed else None


__all__ = ["JOB_FILE", "STOP_FILE", "Jobs", "SweepFailed", "count_jobs", "failed_message",
           "final_error", "job_failed", "progress_line", "read_job_record", "read_stop",
           "shared_failure", "worker_lost", "write_stop"]
