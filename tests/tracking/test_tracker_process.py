"""MLflow in a helper process: same records as in-process tracking, errors, signals, orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.errors import TrackingError
from framework.tracking import tracker_process
from framework.tracking.protocol import NullTracker
from framework.tracking.tracker import MlflowTracker
from framework.tracking.tracker_process import ORPHANED, TrackerProcess, open_tracker, prestart
from framework.training.config import MlflowConfig
from tests.conftest import needs_data
from tests.helpers import sqlite_store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the helper process needs POSIX pipes")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


@pytest.fixture()
def helper(tmp_path):
    """A prestarted helper adopted by a job config on a temp sqlite store."""
    uri = sqlite_store(tmp_path / "mlflow.db")
    prestart(["cell=rnn"])
    tracker = open_tracker(MlflowConfig(tracking_uri=uri, experiment_name="t"), multirun=False)
    yield tracker, uri
    tracker.end("FAILED", "test teardown")


def test_a_helper_logs_a_whole_run(helper, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracker, uri = helper
    assert isinstance(tracker, TrackerProcess)
    started: list[str] = []
    tracker.check_reachable()
    assert tracker.start(params={"cell.name": "rnn"}, tags={"task": "lm"},
                         on_start=started.append) is None  # the id comes back later
    for step in range(1, 4):
        tracker.log_metrics({"loss": 1.0 / step}, step)
    fig = plt.figure()
    plt.plot([1, 2, 3])
    tracker.log_figure(fig, "plots/curve.png")
    tracker.log_text("hello\n", "samples.txt")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("| a |\n")
    tracker.log_artifacts(str(tmp_path / "results"), "results")
    tracker.end("FINISHED")

    assert started == [tracker.run_id] and tracker.run_id
    client = _client(uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["cell.name"] == "rnn" and run.data.tags["task"] == "lm"
    history = client.get_metric_history(tracker.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    names = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert {"plots", "samples.txt", "results"} <= names
    assert [a.path for a in client.list_artifacts(tracker.run_id, "plots")] == ["plots/curve.png"]


def test_the_helper_ignores_ctrl_c_and_the_job_decides_how_the_run_ends(helper):
    tracker, uri = helper
    tracker.start(params={}, tags={})
    tracker.log_metrics({"loss": 2.0}, 1)
    while tracker.run_id is None:  # the helper is past its start-up
        tracker._read(None)
    assert os.getsid(tracker._proc.pid) != os.getsid(0)  # a terminal's Ctrl-C does not reach it
    tracker._proc.send_signal(signal.SIGINT)  # a Ctrl-C reaches the whole process group
    tracker._proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert tracker._proc.poll() is None
    tracker.log_metrics({"loss": 1.0}, 2)
    tracker.end("KILLED", "interrupted by SIGINT")
    run = _client(uri).get_run(tracker.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["rnnlab.failure_reason"] == "interrupted by SIGINT"
    assert run.data.metrics["loss"] == 1.0  # buffered metrics were flushed first


def test_a_job_that_dies_leaves_its_run_failed_with_the_reason(helper):
    tracker, uri = helper
    tracker.start(params={}, tags={})
    tracker.log_metrics({"loss": 2.0}, 1)
    while tracker.run_id is None:  # wait until the run exists
        tracker._read(None)
    tracker._proc.stdin.close()  # what the helper sees when the job is killed
    assert tracker._proc.wait(timeout=120) == 0
    tracker._ended = True
    run = _client(uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["rnnlab.failure_reason"] == ORPHANED
    assert run.data.metrics["loss"] == 2.0


def test_nothing_listening_fails_before_training(tmp_path):
    prestart(["cell=rnn"])
    tracker = open_tracker(MlflowConfig(tracking_uri="http://127.0.0.1:9", experiment_name="t"),
                           multirun=False)
    with pytest.raises(TrackingError, match="not reachable.*mlflow.enabled=false"):
        tracker.check_reachable()  # a TCP connect in the job itself: no waiting for the helper
    tracker.end("FAILED", "unreachable")
    assert tracker._proc.poll() == 0


def test_a_tracking_error_found_by_the_helper_reaches_the_job_as_one_line(tmp_path):
    """A server that answers, but not as MLflow: only the helper's own request can tell."""
    import http.server
    import threading

    class NotMlflow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        prestart(["cell=rnn"])
        uri = f"http://127.0.0.1:{server.server_port}"
        tracker = open_tracker(MlflowConfig(tracking_uri=uri, experiment_name="t"),
                               multirun=False)
        with pytest.raises(TrackingError, match="is not usable: .*mlflow.enabled=false"):
            tracker.check_reachable()  # an http store: the job waits for the helper's probe
        tracker.end("FAILED", "not an MLflow server")
        assert tracker._proc.poll() == 0
    finally:
        server.shutdown()


@pytest.mark.parametrize("argv", [["-m", "cell=rnn,gru"], ["--help"], ["--cfg", "job"],
                                  ["hparams_search=optuna"], ["mlflow.enabled=false"],
                                  ["mlflow.helper_process=false"]])
def test_no_helper_is_started_for_what_is_not_one_tracked_job(argv, monkeypatch):
    monkeypatch.setattr(tracker_process, "_prestarted", None)
    prestart(argv)
    assert tracker_process._prestarted is None


@pytest.mark.parametrize("cfg, multirun, kind", [
    (MlflowConfig(enabled=False), False, NullTracker),
    (MlflowConfig(helper_process=False), False, MlflowTracker),
    (MlflowConfig(), True, MlflowTracker),  # sweep jobs keep MLflow in their (reused) process
])
def test_an_unused_helper_is_stopped(cfg, multirun, kind):
    prestart(["cell=rnn"])
    proc = tracker_process._prestarted
    assert proc is not None
    tracker = open_tracker(cfg, multirun=multirun)
    assert type(tracker) is kind
    assert tracker_process._prestarted is None and proc.poll() is not None


@pytest.mark.slow  # two processes and a kill; the default suite has the helper's side of it
@needs_data("dinos.txt")
def test_a_killed_command_line_job_leaves_a_failed_run(tmp_path):
    """The whole path: `python -m framework`, SIGKILL mid-training, the helper ends the run
    (test_a_job_that_dies_leaves_its_run_failed_with_the_reason is what the helper sees)."""
    uri = sqlite_store(tmp_path / "mlflow.db")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    job = subprocess.Popen(
        [sys.executable, "-m", "framework", "cell=rnn", "train.steps=100000",
         "train.progress=never", "train.sample_every=100000", f"mlflow.tracking_uri={uri}",
         "mlflow.experiment_name=killed"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_id = None
    for line in job.stdout:
        if line.startswith("MLflow run "):
            run_id = line.split()[2]
            break
    assert run_id, "the job never announced its run"
    time.sleep(1.0)
    job.kill()
    job.wait()
    client = _client(uri)
    deadline = time.monotonic() + 120
    while client.get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["rnnlab.failure_reason"] == ORPHANED
    assert Path(tmp_path).is_dir()


def test_a_dead_helper_leaves_training_going_with_one_warning(helper, capsys):
    tracker, _ = helper
    tracker.start(params={}, tags={})
    tracker._proc.kill()
    tracker._proc.wait()
    for step in range(1, 4):  # no exception: the job's training is worth more than its records
        tracker.log_metrics({"loss": 1.0}, step)
    assert tracker.ui_link("lm") is None
    with pytest.raises(TrackingError, match="helper process exited"):
        tracker.download_checkpoint("0" * 32)
    tracker.end("FINISHED")
    warnings = [x for x in capsys.readouterr().err.splitlines() if "helper process exited" in x]
    assert len(warnings) == 1 and "training goes on without tracking" in warnings[0]


def test_a_read_only_sqlite_store_fails_before_training(tmp_path):
    store = tmp_path / "ro"
    store.mkdir()
    (store / "m.db").write_bytes(b"")
    (store / "m.db").chmod(0o444)
    store.chmod(0o555)
    try:
        if os.access(store, os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes (the slow stage "
                        "mounts a read-only tmpfs instead)")
        prestart(["cell=rnn"])
        tracker = open_tracker(MlflowConfig(tracking_uri=f"sqlite:///{store / 'm.db'}"),
                               multirun=False)
        with pytest.raises(TrackingError, match=r"is read-only \(sqlite: readonly database\)"):
            tracker.check_reachable()
        tracker.end("FAILED", "read-only")
    finally:
        store.chmod(0o755)


def test_the_read_only_check_names_the_store_and_the_fix(tmp_path, monkeypatch):
    from framework.tracking.store_errors import sqlite_read_only

    db = tmp_path / "m.db"
    assert sqlite_read_only(db, db) is None  # writable folder, no file yet
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert sqlite_read_only(db, db) == (
        f"the MLflow store {db} is read-only (sqlite: readonly database); make the file and its "
        f"folder writable, or use another mlflow.tracking_uri")


def test_a_helper_killed_mid_run_is_noticed_and_the_job_ends_the_run(helper, capsys):
    tracker, uri = helper
    tracker.start(params={}, tags={})
    tracker.ui_link("lm")  # waits for the helper: the run exists and the job knows its id
    run_id = tracker.run_id
    assert run_id
    tracker._proc.kill()
    for step in range(1, 4):
        tracker.log_metrics({"loss": 1.0}, step)
    tracker.end("FINISHED")
    assert tracker.unlogged() == ("everything the job sent after the MLflow helper process "
                                  "exited (status -9) during the run")
    run = _client(uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["rnnlab.failure_reason"] == (
        "the MLflow helper process exited (status -9) during the run")
