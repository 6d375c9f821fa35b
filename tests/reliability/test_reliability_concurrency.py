"""Concurrency and a flaky tracking store: parallel jobs on one store, a server that goes away.

* Eight ``python -m framework`` processes started at once on a FRESH sqlite store: every run is
  there, in the right experiment, FINISHED, with its own params, metrics and checkpoint.
* The same against ``mlflow server`` (slow).
* A tracking server killed mid-run and restarted on the same port and backend: training goes on,
  exits 0, and the run ends FINISHED with all its metrics (slow).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from framework import ROOT
from framework.training.checkpoint import load_checkpoint
from tests.conftest import needs_data

JOBS = 8
TINY = ["cell=rnn", "cell.hidden_size=8", "train.batch_size=4", "train.steps=20",
        "train.log_every=1", "train.eval_every=10", "train.sample_every=0",
        "train.checkpoint_every=10", "mlflow.log_model=false", "mlflow.experiment_name=par"]
MLFLOW = Path(sys.executable).parent / "mlflow"


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return env


def _start_jobs(uri: str, cwd: Path, extra: list[str] | None = None) -> list[subprocess.Popen]:
    # Default hydra.run.dir on purpose: jobs started in the same second must not share files.
    return [subprocess.Popen([sys.executable, "-m", "framework", *TINY, f"seed={i}",
                              f"mlflow.run_name=job{i}", f"mlflow.tracking_uri={uri}",
                              *(extra or [])],
                             cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            for i in range(JOBS)]


def _check_runs(uri: str, tmp_path: Path) -> None:
    """Exactly one FINISHED run per job, in experiment 'par', holding that job's own files."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("par")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    names = sorted(r.info.run_name for r in runs)
    assert names == sorted(f"job{i}" for i in range(JOBS)), names
    default = client.get_experiment_by_name("Default")
    if default is not None:
        assert client.search_runs([default.experiment_id]) == [], "runs misfiled into Default"
    for run in runs:
        seed = run.info.run_name[3:]
        assert run.info.status == "FINISHED", run.info
        assert run.data.params["seed"] == seed
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 20
        local = client.download_artifacts(run.info.run_id, "checkpoints/latest.npz",
                                          str(tmp_path / "dl" / seed))
        _, meta = load_checkpoint(local)
        assert meta["config"]["seed"] == int(seed), "another job's checkpoint was logged"
        assert meta["step"] == 20


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        results.append((p.returncode, err))
    return results


@pytest.mark.slow
def test_eight_parallel_jobs_on_a_fresh_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    results = _wait(_start_jobs(uri, tmp_path), timeout=400)
    assert all(code == 0 for code, _ in results), [err[-2000:] for _, err in results]
    _check_runs(uri, tmp_path)
    run_dirs = {p.parent.parent for p in tmp_path.glob("outputs/*/*/checkpoints/latest.npz")}
    assert len(run_dirs) == JOBS, f"jobs shared output directories: {sorted(run_dirs)}"


@needs_data("dinos.txt")
def test_a_second_live_job_in_the_same_output_dir_is_refused(tmp_path, monkeypatch, capsys):
    import fcntl

    from framework.cli.train import main
    from tests.helpers import preserved_hydra_state, preserved_logging

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.chdir(tmp_path)
    with open(run_dir / ".rnnlab.lock", "a+") as held:  # what a running job holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        monkeypatch.setattr(sys, "argv", ["framework", *TINY, "mlflow.enabled=false",
                                          f"hydra.run.dir={run_dir}"])
        with pytest.raises(SystemExit) as info, preserved_logging(), preserved_hydra_state():
            main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rnnlab: error: output directory {run_dir} is in use by another running "
                   f"rnnlab job; give each job its own hydra.run.dir"]
    assert not (run_dir / "checkpoints").exists()
    # Once that job is gone (its lock released, as the kernel does even after kill -9) the
    # directory can be used again, e.g. to resume in place.
    monkeypatch.setattr(sys, "argv", ["framework", *TINY, "mlflow.enabled=false",
                                      f"hydra.run.dir={run_dir}", "train.steps=2"])
    with preserved_logging(), preserved_hydra_state():
        main()  # success: main returns (a failure exits with its status, as above)
    assert (run_dir / "checkpoints" / "latest.npz").is_file()


# --------------------------------------------------------------------------- mlflow server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, backend: Path, artifacts: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{backend}", "--artifacts-destination",
         str(artifacts)],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)  # its own process group: uvicorn workers die with it
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    _stop_server(proc)
    raise AssertionError("mlflow server did not start within 90 s")


def _stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_eight_parallel_jobs_against_a_tracking_server(tmp_path):
    port = _free_port()
    server = _start_server(port, tmp_path / "backend.db", tmp_path / "artifacts")
    try:
        uri = f"http://127.0.0.1:{port}"
        results = _wait(_start_jobs(uri, tmp_path), timeout=400)
        assert all(code == 0 for code, _ in results), [err[-2000:] for _, err in results]
        _check_runs(uri, tmp_path)
    finally:
        _stop_server(server)


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_training_survives_the_tracking_server_going_away(tmp_path):
    port = _free_port()
    backend, artifacts = tmp_path / "backend.db", tmp_path / "artifacts"
    server = _start_server(port, backend, artifacts)
    uri = f"http://127.0.0.1:{port}"
    steps = 60000
    job = subprocess.Popen(
        [sys.executable, "-m", "framework", "cell=rnn", "cell.hidden_size=8",
         "train.batch_size=4", f"train.steps={steps}", "train.log_every=100",
         "train.eval_every=0", "train.sample_every=0", "train.checkpoint_every=5000",
         "mlflow.log_model=false", "hydra.run.dir=run", f"mlflow.tracking_uri={uri}"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ckpts = tmp_path / "run" / "checkpoints"
        t0 = time.monotonic()
        # The run exists (a command-line job's MLflow helper creates it while training starts)...
        assert any(line.startswith("MLflow run ") for line in job.stdout), job.communicate()
        while not (ckpts / "latest.npz").exists():  # ...and training is under way
            assert job.poll() is None, job.communicate()
            assert time.monotonic() - t0 < 120
            time.sleep(0.1)
        # The job and its MLflow helper process are paused while the server is down or
        # starting, so that the outage spans ~5 s of their time whatever the machine's speed.
        paused = [job.pid, *_children(job.pid)]
        _signal_all(paused, signal.SIGSTOP)
        _stop_server(server)  # the server goes away mid-run...
        _signal_all(paused, signal.SIGCONT)
        time.sleep(5)  # ...while the job trains on and its metric flushes fail
        assert job.poll() is None, f"training died with the server: {job.communicate()}"
        _signal_all(paused, signal.SIGSTOP)
        server = _start_server(port, backend, artifacts)  # ...and comes back
        _signal_all(paused, signal.SIGCONT)
        out, err = job.communicate(timeout=900)
        # Training finished. What failed during the outage was kept and sent again: when all of
        # it got through the command exits 0; when something (a call made once, such as the
        # dataset input) was lost, it exits 4 and its last line names what was not recorded.
        errors = [line for line in err.splitlines() if line.startswith("rnnlab: error: ")]
        if job.returncode == 4:
            assert len(errors) == 1 and "did not record" in errors[0], err[-3000:]
            assert "checkpoints" in errors[0], errors
        else:
            assert job.returncode == 0 and not errors, err[-3000:]
        assert "Retrying" not in err, err[-3000:]  # urllib3's retries are not on the console
        # The warning goes through logging: Hydra sends it to the console and the job's log.
        logs = out + err + "".join(p.read_text() for p in (tmp_path / "run").glob("*.log"))
        assert "MLflow could not record " in logs, \
            f"the outage was not reported: {err[-1500:]}"
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGCONT)
            job.kill()
            job.communicate()
        _stop_server(server)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{backend}")  # the server's own store, read directly
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    # Complete: FINISHED. Something lost (exit 4): FAILED, with the reason as a tag.
    if job.returncode == 4:
        assert run.info.status == "FAILED", run.info.status
        assert "did not record" in run.data.tags.get("rnnlab.failure_reason", ""), run.data.tags
    else:
        assert run.info.status == "FINISHED", run.info.status
    history = client.get_metric_history(run.info.run_id, "train_loss")
    logged = sorted(m.step for m in history)
    assert logged == list(range(0, steps, 100)) + [steps - 1], (len(logged), logged[:5])
    assert np.isfinite([m.value for m in history]).all()
