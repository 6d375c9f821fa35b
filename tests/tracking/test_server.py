"""A real ``mlflow server`` (sqlite backend, proxied artifacts) and a parallel sweep over HTTP.

The helpers here (free port, start/stop a server in its own process group) are shared with
test_postgres.py and test_ui.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.sweeps.test_sweep import TINY, parent_and_children

START_TIMEOUT = 60.0  # `mlflow server` takes up to ~60 s to answer on 2 busy cores
STOP_TIMEOUT = 30.0
# MLflow 3's server also starts ~7 huey job consumers (GenAI jobs, ~240 MB each) that slow its
# start-up and outlive SIGTERM; experiment tracking does not need them.
SERVER_ENV = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop_process_group(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group we started (server + its workers), SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(workdir: Path, backend_uri: str) -> Iterator[str]:
    """Run ``mlflow server`` on a free 127.0.0.1 port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server", "--workers", "1", "--host", "127.0.0.1",
           "--port", str(port), "--backend-store-uri", backend_uri,
           "--artifacts-destination", str(workdir / "artifacts")]
    log_path = workdir / "mlflow-server.log"
    with open(log_path, "wb") as log:
        # Its own session: stopping it signals the whole group (uvicorn worker included) and
        # nothing else on the machine.
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=SERVER_ENV)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n"
                            f"{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not answering after {START_TIMEOUT:.0f} s:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(1.0)
        yield url
    finally:
        stop_process_group(proc)


def run_sweep(cwd: Path, uri: str, experiment: str, args: list[str]):
    proc = cli("framework", ["-m", *TINY, f"mlflow.tracking_uri={uri}",
                             f"mlflow.experiment_name={experiment}", *args], cwd, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def check_sweep_runs(uri: str, experiment: str, cells: list[str]) -> tuple:
    """One FINISHED parent with one FINISHED child per cell, artifacts reachable over HTTP."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent, children = parent_and_children(client, experiment)
    assert parent.info.status == "FINISHED"
    assert sorted(c.data.params["cell.name"] for c in children) == sorted(cells)
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        assert "val_loss" in child.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep_summary.md", "sweep_summary.csv", "sweep_val_loss.png"} <= artifacts
    checkpoints = {a.path for a in client.list_artifacts(children[0].info.run_id, "checkpoints")}
    assert checkpoints, "child checkpoints should be uploaded through the server's proxy"
    return client, parent, children


@pytest.mark.slow
def test_parallel_sweep_against_tracking_server(tmp_path):
    with mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'server.db'}") as url:
        jobs = tmp_path / "jobs"
        jobs.mkdir()
        proc = run_sweep(jobs, url, "over-http", ["hydra/launcher=joblib",
                                                  "hydra.launcher.n_jobs=2",
                                                  "cell=rnn,lstm,gru"])
        assert "Joblib.Parallel" in proc.stdout + proc.stderr
        client, parent, children = check_sweep_runs(url, "over-http", ["rnn", "lstm", "gru"])
        # The client side kept no local store: everything went over HTTP.
        assert not (jobs / "mlflow.db").exists() and not (jobs / "mlruns").exists()
        assert (tmp_path / "artifacts").is_dir()
        # The summary printed the UI links on this server.
        assert f"{url}/#/experiments/{parent.info.experiment_id}/runs" in proc.stdout
