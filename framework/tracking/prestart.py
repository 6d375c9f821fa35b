"""Starting the MLflow helper process first thing, before the job imports anything else.

The helper imports MLflow (the slowest part of a tracked job), so every millisecond it starts
earlier is one less that the job may wait for it at the end. This module imports only what
starting a process needs; :mod:`framework.tracking.tracker_process` adopts the process it starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framework.tracking.spare import SpareProcess

# Command lines that never train exactly one job here: help and config printing, sweeps.
NO_SINGLE_JOB = ("-m", "--multirun", "-h", "--help", "--hydra-help", "-c", "--cfg", "-i",
                 "--info", "-sc", "--shell-completion", "-p", "--package")
NO_TRACKING = ("mlflow.enabled=false", "mlflow.helper_process=false")


def helper_wanted(argv: Sequence[str]) -> bool:
    """Whether ``argv`` looks like one tracked job (a guess: the config decides later whether
    the helper is used, and an unused helper is stopped)."""
    if os.name != "posix":
        return False
    return not (any(arg in NO_SINGLE_JOB for arg in argv) or any(
        arg.startswith("hparams_search=") or arg.replace(" ", "").lower() in NO_TRACKING
        for arg in argv))


def spawn_helper(argv: Sequence[str]) -> subprocess.Popen | SpareProcess | None:
    """The helper process for the job of ``argv``: the spare helper waiting for it
    (:mod:`~framework.tracking.spare`), else one started now; None when not wanted."""
    if not helper_wanted(argv):
        return None
    from framework.tracking.spare import claim, leave_spare

    helper = claim() or subprocess.Popen(
        [sys.executable, "-m", "framework.tracking.tracker_process"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        start_new_session=True)  # a Ctrl-C or a closed terminal reaches the job, not the helper
    leave_spare()  # for the next tracked job: it imports MLflow on idle CPU while this one runs
    return helper


__all__ = ["NO_SINGLE_JOB", "NO_TRACKING", "helper_wanted", "spawn_helper"]
