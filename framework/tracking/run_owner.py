"""Which process owns a RUNNING MLflow run, and settling a run whose owner is gone (KILLED).

Nothing runs after ``kill -9``: a job killed that way (and a job whose helper died with it, or
that ended while the tracking store was away) leaves its run RUNNING. Every run therefore carries
the tag ``rnnlab.owner`` (``host pid start-time`` of the training process). The next command
that meets the run (``resume=`` of its checkpoint, or a new run in the same output folder) reads
the tag: when the owner ran on this machine and that process is gone (no such pid, or a pid
reused by a process started at another time), the run is ended KILLED with the reason in
``rnnlab.failure_reason``, and the command says so. A sweep does the same for its child runs
once its jobs are done (:func:`settle_abandoned`): a job killed by ``kill -9`` (or a worker
of its launcher that died) leaves no process that could end its run.
"""

from __future__ import annotations

import os
import socket
from typing import Any

OWNER_TAG = "rnnlab.owner"
OWNER_PID_ENV = "RNNLAB_RUN_OWNER_PID"  # set in the helper process: the job it records
FAILURE_REASON_TAG = "rnnlab.failure_reason"


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def owner_pid() -> int:
    """The training process: this one, or the job a helper process records for."""
    try:
        return int(os.environ.get(OWNER_PID_ENV, "")) or os.getpid()
    except ValueError:
        return os.getpid()


def owner_tag() -> str:
    """``host pid start-time`` of the process that trains the run."""
    pid = owner_pid()
    return f"{socket.gethostname()} {pid} {_started(pid) or '?'}"


def owner_gone(tag: str | None) -> bool | None:
    """True when the owner named by ``tag`` ran here and has exited, False when it still runs,
    None when that cannot be told (another machine, no tag)."""
    parts = (tag or "").split()
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    started = _started(int(parts[1]))
    if started is None:
        return True
    return parts[2] != "?" and started != parts[2]


def settle(client: Any, run_id: str) -> str | None:
    """End run ``run_id`` KILLED if it is RUNNING with its owner gone; returns what happened to
    the run, in words (None: nothing to say, or the run cannot be read)."""
    try:
        run = client.get_run(run_id)
    except Exception:
        return None
    status, tags = run.info.status, run.data.tags
    if status != "RUNNING":
        reason = tags.get(FAILURE_REASON_TAG)
        return f"MLflow run {run_id} had ended {status}" + (f" ({reason})" if reason else "")
    tag = tags.get(OWNER_TAG)
    if owner_gone(tag) is not True:
        return None
    host, pid, _ = str(tag).split()
    reason = (f"its training process (pid {pid} on {host}) ended without ending the run "
              f"(killed, or the tracking store was unreachable at its end)")
    client.set_tag(run_id, FAILURE_REASON_TAG, reason)
    client.set_terminated(run_id, "KILLED")
    return f"MLflow run {run_id} was left RUNNING: {reason}; it is now marked KILLED"


def settle_abandoned(client: Any, runs: Any) -> list[str]:
    """End KILLED every run of ``runs`` (MLflow ``Run`` objects) that is RUNNING with its owner
    on this machine gone (:func:`settle`); the ids of the runs so ended. A run whose owner
    still runs, or ran elsewhere, is left as it is."""
    killed = []
    for run in runs:
        if run.info.status != "RUNNING" or owner_gone(run.data.tags.get(OWNER_TAG)) is not True:
            continue
        try:
            said = settle(client, run.info.run_id)
        except Exception:  # the store failed: the run stays as it is, the next resume= settles it
            continue
        if said is not None and said.endswith("marked KILLED"):
            killed.append(run.info.run_id)
    return killed


__all__ = ["OWNER_PID_ENV", "OWNER_TAG", "owner_gone", "owner_pid", "owner_tag", "settle",
           "settle_abandoned"]
