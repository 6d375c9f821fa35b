"""Real training processes against a tracking server that faults, and processes killed mid-run.

Each test runs ``python -m framework`` (tens of seconds on a loaded machine): all are ``slow``.
The contract (docs/reliability.md): a store unusable at the start fails the command before it
trains (exit 2, one line); a fault during training warns once, training goes on, and the command
exits 4 naming what was not logged; no run is left RUNNING once the next command has looked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import needs_data
from tests.helpers import QUICK
from tests.tracking.fault_server import FaultProxy, mlflow_server_thread

pytestmark = [pytest.mark.slow, needs_data("dinos.txt")]
TRACKED = [a for a in QUICK if not a.startswith("mlflow.")] + ["train.sample_every=0"]
SHORT_HTTP = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "2", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def _env() -> dict[str, str]:
    from framework import ROOT

    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", **SHORT_HTTP,
            "RNNLAB_DATA_DIR": os.environ.get("RNNLAB_DATA_DIR",
                                              str(ROOT.parent / "shared" / "data"))}


def _train(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framework", *TRACKED, *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with mlflow_server_thread(tmp_path_factory.mktemp("server")) as url:
        _client(url).search_experiments(max_results=1)
        yield url


@pytest.fixture()
def proxy(upstream):
    p = FaultProxy(upstream)
    yield p
    p.stop()


@pytest.mark.parametrize("mode", ["garbage", "redirect", "silent"])
def test_a_server_that_faults_at_the_start_stops_the_command_before_it_trains(
        proxy, tmp_path, mode):
    proxy.set_mode(mode)
    proxy.delay = 1.0
    started = time.monotonic()
    proc = _train(tmp_path, f"mlflow.tracking_uri={proxy.url}", f"hydra.run.dir={tmp_path}/run")
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"rnnlab: error: MLflow tracking server '{proxy.url}' is not usable: ")
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained
    assert elapsed < 120  # start-up on a loaded machine, plus one bounded probe


@pytest.mark.parametrize("mode", ["refuse", "garbage", "redirect"])
def test_a_server_lost_mid_run_warns_once_and_the_command_exits_4_naming_what_is_missing(
        proxy, tmp_path, mode):
    proxy.switch_after("log-inputs", mode)  # the run exists; every later call fails
    run_dir = tmp_path / "run"
    proc = _train(tmp_path, f"mlflow.tracking_uri={proxy.url}", f"hydra.run.dir={run_dir}",
                  f"mlflow.experiment_name=mid-{mode}")
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    # The first call to fail (a metric flush, or the first artifact of a short run) is the one
    # warning; the error line lists everything.
    assert "[rnnlab.tracking][WARNING] - MLflow could not record " in lines[0]
    assert ("; training goes on and writes its checkpoints; if anything stays unrecorded, the "
            "command exits non-zero") in lines[0]
    assert lines[1].startswith(f"rnnlab: error: the MLflow store {proxy.url} did not record ")
    assert " metric values, " in lines[1] and "the artifact config.yaml, " in lines[1]
    assert "the run's end (FAILED; it stays RUNNING until the next run in this output folder" \
        in lines[1]
    assert lines[1].endswith(f"the run's checkpoints and train.log in {run_dir} are complete")
    assert (run_dir / "checkpoints" / "latest.npz").is_file()
    assert "done: 12 steps" in proc.stdout

    # The store is back; the next run in the same folder finds the run RUNNING, its process
    # gone, and ends it KILLED, saying so.
    proxy.set_mode("ok")
    client = _client(proxy.url)
    (left,) = client.search_runs([client.get_experiment_by_name(f"mid-{mode}").experiment_id])
    assert left.info.status == "RUNNING"
    again = _train(tmp_path, f"mlflow.tracking_uri={proxy.url}", f"hydra.run.dir={run_dir}",
                   f"mlflow.experiment_name=mid-{mode}")
    assert again.returncode == 0, again.stderr
    assert (f"rnnlab: MLflow run {left.info.run_id} was left RUNNING: its training process "
            f"(pid ") in again.stderr
    assert "View run" not in again.stdout  # MLflow's own link lines are not printed
    assert client.get_run(left.info.run_id).info.status == "KILLED"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rfind(")") + 2:].split()[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _start_long_job(tmp_path: Path, uri: str, run_dir: Path) -> tuple[subprocess.Popen, str]:
    """A job of many steps; returns it once its MLflow run exists, with the run id."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework", *TRACKED, "train.steps=100000",
         "train.checkpoint_every=50", f"mlflow.tracking_uri={uri}", f"hydra.run.dir={run_dir}",
         "train.progress=never"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        if line.startswith("MLflow run "):
            return proc, line.split()[2]
        assert time.monotonic() < deadline
    pytest.fail(f"the job ended without a run: {proc.wait()} {proc.stderr.read()}")


def test_a_helper_killed_mid_run_is_noticed_and_the_job_ends_the_run_itself(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc, run_id = _start_long_job(tmp_path, uri, tmp_path / "run")
    (helper,) = _children(proc.pid)
    os.kill(helper, signal.SIGKILL)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)  # the user stops the job later: it ends as it would
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "rnnlab: warning: the MLflow helper process exited (status -9)" in err
    run = _client(uri).get_run(run_id)
    assert run.info.status == "KILLED"
    assert "the MLflow helper process exited (status -9) during the run" in \
        run.data.tags["rnnlab.failure_reason"]
    assert "rnnlab: warning: the MLflow store" in err  # what was not logged, said at the end


def test_a_job_killed_with_its_helper_is_settled_by_the_next_resume(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    run_dir = tmp_path / "run"
    proc, run_id = _start_long_job(tmp_path, uri, run_dir)
    while not (run_dir / "checkpoints" / "latest.npz").exists():
        time.sleep(0.2)
    (helper,) = _children(proc.pid)
    os.kill(helper, signal.SIGKILL)  # nothing is left to end the run
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _client(uri).get_run(run_id).info.status == "RUNNING"
    last = max(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.npz"))
    again = _train(tmp_path, f"mlflow.tracking_uri={uri}", f"hydra.run.dir={run_dir}",
                   f"resume={run_dir / 'checkpoints' / 'latest.npz'}", f"train.steps={last + 5}")
    assert again.returncode == 0, again.stderr
    assert (f"rnnlab: MLflow run {run_id} was left RUNNING: its training process (pid "
            f"{proc.pid} on ") in again.stderr
    assert f"MLflow run {run_id} continued" in again.stdout
    run = _client(uri).get_run(run_id)
    assert run.info.status == "FINISHED"  # continued by the resumed job, which ended it
