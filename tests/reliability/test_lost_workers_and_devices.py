"""One line, about the actual cause: a sweep whose launcher lost a worker process under a job,
and a pretrained vector file that is a device, a FIFO or a folder (refused before it is
opened: a FIFO would block, /dev/zero stream for ever)."""

from __future__ import annotations

import os

import pytest

from framework.data.vectors import load_vectors
from framework.errors import DataError
from framework.sweeps.outcome import SweepFailed, worker_lost


class TerminatedWorkerError(Exception):
    """Named as joblib's loky names the error of a worker that died."""


def test_a_lost_worker_is_one_line_naming_the_signal():
    exc = TerminatedWorkerError(
        "A worker process managed by the executor was unexpectedly terminated. This could be "
        "caused by a segmentation fault ...\n\nThe exit codes of the workers are {SIGKILL(-9)}")
    error = worker_lost(exc)
    assert isinstance(error, SweepFailed) and error.exit_code == 1
    assert str(error) == (
        "a worker process of the sweep's launcher died under a job (TerminatedWorkerError, exit "
        "SIGKILL(-9)); the sweep stopped: the process was killed or ran out of memory (the "
        "jobs' train.log files and the system log say which)")
    assert worker_lost(ValueError("a bug")) is None


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_a_vector_file_that_is_not_a_regular_file_is_refused_unopened(tmp_path, kind):
    path = {"device": "/dev/zero", "folder": str(tmp_path)}.get(kind)
    if kind == "fifo":
        path = str(tmp_path / "vectors.fifo")
        os.mkfifo(path)
    what = {"device": "a character device", "fifo": "a named pipe (FIFO)",
            "folder": "a directory"}[kind]
    with pytest.raises(DataError) as info:
        load_vectors(path, ["a", "b"], dim=4)
    assert str(info.value) == (f"{path} is {what}, not a regular file; give a GloVe or "
                               f"word2vec text file (word v1 v2 ... a line)")
