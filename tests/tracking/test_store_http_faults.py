"""A tracking server that faults at each stage of a run: bounded time, one line, honest outcome.

The faults (tests/tracking/fault_server.py): slow answers of garbage, a redirect loop, a server
that accepts connections and never answers, one that trickles a byte at a time, and connections
refused. The stages: at the start (the probe before training), in the middle (metric flushes),
at the end (artifacts and the run's end). MLflow's HTTP settings are shortened through its own
environment variables, which rnnlab leaves as the user set them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from framework.errors import TrackingError
from framework.tracking import http_bounds, run_owner
from framework.tracking.tracker import MlflowTracker
from tests.tracking.fault_server import FaultProxy, mlflow_server_thread

# One attempt, 1 s per socket wait: a call's deadline is then 1 x 2 x 1 s + 2 s = 4 s.
FAST_HTTP = {http_bounds.TIMEOUT: "1", http_bounds.MAX_RETRIES: "0",
             http_bounds.BACKOFF_FACTOR: "0"}


REASONS = {"garbage": "it answered with something other than MLflow's JSON",
           "redirect": "it redirects in a loop (more than 30 redirects)",
           "silent": "it did not answer within 1 s (MLFLOW_HTTP_REQUEST_TIMEOUT)",
           "trickle": "MLflow search_experiments got no whole answer within 4 s",
           "refuse": "it refused the connection"}
# Nothing listening is found by a plain connect before MLflow is asked.
REFUSED = "is not reachable (Connection refused); start it, fix mlflow.tracking_uri, or set"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with mlflow_server_thread(tmp_path_factory.mktemp("server")) as url:
        _client(url).search_experiments(max_results=1)  # creates the server's tables now
        yield url


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    """One sqlite store for the module's tests (creating its tables takes seconds)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'm.db'}"
    _client(uri).search_experiments(max_results=1)
    return uri


@contextlib.contextmanager
def short_http() -> Iterator[None]:
    """MLflow's HTTP settings shortened, as a user would set them, while a fault lasts (calls
    that reach the real server keep the defaults: a loaded machine may take a second)."""
    old = {name: os.environ.get(name) for name in FAST_HTTP}
    os.environ.update(FAST_HTTP)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture()
def fast_http():
    with short_http():
        yield


@pytest.fixture()
def proxy(upstream):
    """A proxy to a real MLflow server in a thread (its start-up takes 5-25 s: slow tests)."""
    p = FaultProxy(upstream)
    yield p
    p.stop()


@pytest.fixture()
def faulty():
    """A proxy whose upstream does not exist: for faults that never reach it."""
    p = FaultProxy("127.0.0.1:9")
    yield p
    p.stop()


def _client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(url)


def test_the_users_http_settings_are_kept_and_rnnlabs_apply_otherwise(monkeypatch):
    monkeypatch.setenv(http_bounds.TIMEOUT, "7")
    monkeypatch.delenv(http_bounds.MAX_RETRIES, raising=False)
    http_bounds.apply_defaults()
    assert os.environ[http_bounds.TIMEOUT] == "7"
    assert os.environ[http_bounds.MAX_RETRIES] == http_bounds.DEFAULTS[http_bounds.MAX_RETRIES]
    assert os.environ[http_bounds.RETRY_AFTER] in ("false", os.environ[http_bounds.RETRY_AFTER])
    with http_bounds.limits(max_retries=3, timeout=30):
        assert os.environ[http_bounds.TIMEOUT] == "7"  # the user's
        assert os.environ[http_bounds.MAX_RETRIES] == "3"  # rnnlab's, for this call
    assert os.environ[http_bounds.MAX_RETRIES] == http_bounds.DEFAULTS[http_bounds.MAX_RETRIES]
    monkeypatch.delenv(http_bounds.MAX_RETRIES)


def test_a_deadline_stops_a_call_that_waits_for_ever():
    started = time.monotonic()
    with pytest.raises(http_bounds.StoreTimeout, match="got no whole answer within 1 s"):
        with http_bounds.deadline(1, "MLflow log_batch"):
            time.sleep(30)
    assert time.monotonic() - started < 3


def test_a_deadline_puts_back_a_timer_set_before_it():
    import signal

    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 50)
        with http_bounds.deadline(1, "MLflow get_run"):
            pass
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 45 < remaining <= 50
        assert signal.getsignal(signal.SIGALRM) is not None and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("mode", ["garbage", "redirect", "silent",
                                  pytest.param("trickle", marks=pytest.mark.slow), "refuse"])
def test_a_server_that_faults_at_the_start_fails_before_training_in_bounded_time(
        faulty, fast_http, mode):
    proxy = faulty
    proxy.set_mode(mode)
    proxy.delay = 0.5
    tracker = MlflowTracker(proxy.url, experiment_name="faults")
    import mlflow.tracking  # noqa: F401  (imported before the clock starts)

    started = time.monotonic()
    with pytest.raises(TrackingError) as info:
        tracker.check_reachable()
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "\n" not in message
    assert elapsed < http_bounds.call_budget() + 5, elapsed  # + CPU time on a loaded machine
    if mode == "refuse":
        assert message.startswith(f"MLflow tracking server '{proxy.url}' {REFUSED}")
        return
    assert message.startswith(f"MLflow tracking server '{proxy.url}' is not usable: "
                              f"{REASONS[mode]}")
    assert message.endswith("check the server, fix mlflow.tracking_uri, or set "
                            "mlflow.enabled=false")


def _started_run(store, experiment: str) -> MlflowTracker:
    """A started run on ``store`` (a proxy, or a tracking URI)."""
    uri = getattr(store, "url", store)
    tracker = MlflowTracker(uri, experiment_name=experiment, log_model=False)
    tracker.check_reachable()
    tracker.start(params={"cell.name": "rnn"})
    return tracker


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["garbage", "redirect", "silent", "refuse"])
def test_a_fault_in_the_middle_warns_once_keeps_the_metrics_and_the_run_ends_finished(
        proxy, caplog, mode):
    tracker = _started_run(proxy, f"mid-{mode}")
    proxy.set_mode(mode)
    with caplog.at_level(logging.DEBUG, logger="rnnlab.tracking"), short_http():
        for step in range(3):
            tracker.log_metrics({"loss": 1.0 / (step + 1)}, step)
            tracker._retry_at = 0.0  # retry at once (no waiting in a test)
            started = time.monotonic()
            assert tracker.flush() is False
            assert time.monotonic() - started < http_bounds.call_budget() + 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "keeping 1 metric values" in warnings[0].getMessage()
    assert "exits non-zero" in warnings[0].getMessage()
    proxy.set_mode("ok")  # the store is back before the end: everything arrives
    tracker.end()
    assert tracker.unlogged() is None
    run = _client(proxy.url).get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    history = _client(proxy.url).get_metric_history(tracker.run_id, "loss")
    assert sorted(m.step for m in history) == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["garbage", "refuse"])
def test_a_fault_at_the_end_says_what_was_not_logged(proxy, tmp_path, mode):
    tracker = _started_run(proxy, f"end-{mode}")
    tracker.log_metrics({"loss": 1.0}, 0)
    proxy.set_mode(mode)
    (tmp_path / "table.md").write_text("| a |\n")
    with short_http():
        tracker.log_artifact(str(tmp_path / "table.md"), "results")
        tracker.end()
    missing = tracker.unlogged()
    assert missing is not None
    assert missing.startswith("1 metric values, the artifact table.md")
    assert "the run's end (FAILED; it stays RUNNING until the next run" in missing
    proxy.set_mode("ok")
    assert _client(proxy.url).get_run(tracker.run_id).info.status == "RUNNING"


@pytest.mark.slow
def test_a_store_back_for_the_end_records_what_is_missing(proxy, tmp_path):
    tracker = _started_run(proxy, "end-back")
    tracker.log_metrics({"loss": 1.0}, 0)
    proxy.set_mode("garbage")
    (tmp_path / "samples.txt").write_text("abc\n")
    with short_http():
        tracker.log_artifact(str(tmp_path / "samples.txt"))
    proxy.set_mode("ok")
    tracker.end()
    assert tracker.unlogged() == "the artifact samples.txt"
    run = _client(proxy.url).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[run_owner.FAILURE_REASON_TAG] == (
        "the tracking store did not record the artifact samples.txt")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_left_running_by_a_gone_process_is_marked_killed_by_the_next_one(
        sqlite_uri, tmp_path, capsys):
    import socket

    uri = sqlite_uri
    tracker = _started_run(uri, "left-running")
    left = tracker.run_id
    client = _client(uri)
    client.set_tag(left, run_owner.OWNER_TAG, f"{socket.gethostname()} {_dead_pid()} 1")
    nxt = MlflowTracker(uri, experiment_name="left-running", log_model=False)
    nxt.start(previous_run=left)
    err = capsys.readouterr().err
    assert f"rnnlab: MLflow run {left} was left RUNNING: its training process (pid " in err
    assert "it is now marked KILLED" in err
    run = client.get_run(left)
    assert run.info.status == "KILLED"
    assert "ended without ending the run" in run.data.tags[run_owner.FAILURE_REASON_TAG]
    nxt.end()
    # A run that ended is left as it is, and a new run of the folder says nothing about it.
    third = MlflowTracker(uri, experiment_name="left-running", log_model=False)
    third.start(previous_run=nxt.run_id)
    assert capsys.readouterr().err == ""
    third.end()


def test_a_running_run_whose_owner_lives_is_left_alone(sqlite_uri, tmp_path, capsys):
    uri = sqlite_uri
    tracker = _started_run(uri, "owner-alive")
    nxt = MlflowTracker(uri, experiment_name="owner-alive", log_model=False)
    nxt.start(previous_run=tracker.run_id)
    assert "left RUNNING" not in capsys.readouterr().err
    assert _client(uri).get_run(tracker.run_id).info.status == "RUNNING"
    nxt.end()
    tracker.end()


def test_resume_says_how_the_earlier_run_ended(sqlite_uri, tmp_path, capsys):
    uri = sqlite_uri
    tracker = _started_run(uri, "resume-says")
    tracker.end("KILLED", "interrupted by SIGINT at step 40")
    nxt = MlflowTracker(uri, experiment_name="resume-says", log_model=False)
    assert nxt.start(continue_run=tracker.run_id) == tracker.run_id
    assert (f"rnnlab: MLflow run {tracker.run_id} had ended KILLED (interrupted by SIGINT at "
            f"step 40)") in capsys.readouterr().err
    nxt.end()


def test_failed_calls_warn_once_and_the_run_ends_failed_naming_what_is_missing(
        sqlite_uri, tmp_path, monkeypatch, caplog):
    """The same contract on a sqlite store whose calls fail (no server needed: fast)."""
    from mlflow.exceptions import MlflowException

    uri = sqlite_uri
    tracker = _started_run(uri, "contract")
    client = tracker.client
    real_batch = client.log_batch

    def broken(*args, **kwargs):
        raise MlflowException("API request to endpoint was successful but the response body "
                              "was not in a valid JSON format. Response body: '<html>'")

    monkeypatch.setattr(client, "log_batch", broken)
    monkeypatch.setattr(client, "log_artifact", broken)
    with caplog.at_level(logging.DEBUG, logger="rnnlab.tracking"):
        for step in range(3):
            tracker.log_metrics({"loss": 1.0}, step)
            tracker._retry_at = 0.0
            assert tracker.flush() is False
        (tmp_path / "table.md").write_text("| a |\n")
        tracker.log_artifact(str(tmp_path / "table.md"), "results")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "MLflow could not record metric values (it answered with something other than "
        "MLflow's JSON); keeping 1 metric values, retrying in 4 s; training goes on and writes "
        "its checkpoints; if anything stays unrecorded, the command exits non-zero at the end "
        "and lists it"]
    monkeypatch.setattr(client, "log_batch", real_batch)  # back for the end
    tracker.end()
    assert tracker.unlogged() == "the artifact table.md"
    run = _client(uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[run_owner.FAILURE_REASON_TAG] == (
        "the tracking store did not record the artifact table.md")
    assert [m.step for m in _client(uri).get_metric_history(tracker.run_id, "loss")] == [0, 1, 2]


def test_mlflows_setup_lines_stay_off_the_console(tmp_path, capfd):
    from framework.tracking.tracker import make_client

    capfd.readouterr()
    make_client(f"sqlite:///{tmp_path / 'new.db'}")  # creates and migrates the tables
    out, err = capfd.readouterr()
    assert "Creating initial MLflow database tables" not in out + err
    assert "Updating database tables" not in out + err and "alembic" not in out + err
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] in ("true", "1", "True")


def test_owner_tags_name_this_process_and_tell_gone_from_alive():
    tag = run_owner.owner_tag()
    host, pid, started = tag.split()
    assert int(pid) == os.getpid() and started.isdigit()
    assert run_owner.owner_gone(tag) is False
    assert run_owner.owner_gone(f"{host} {_dead_pid()} 1") is True
    assert run_owner.owner_gone(f"{host} {os.getpid()} 1") is True  # a reused pid
    assert run_owner.owner_gone(f"another-host {os.getpid()} {started}") is None
    assert run_owner.owner_gone(None) is None


def test_parallel_jobs_racing_to_create_the_dataset_row_both_record_it(sqlite_uri,
                                                                      monkeypatch):
    """Two jobs of one experiment logging the same dataset at once: MLflow's database store lets
    the second insert fail on the unique key; its retry links the row the first one made."""
    from mlflow.exceptions import MlflowException

    tracker = _started_run(sqlite_uri, "dataset-race")
    real = tracker.client.log_inputs
    calls: list[int] = []

    def raced(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: "
                                  "datasets.experiment_id, datasets.name, datasets.digest")
        return real(*args, **kwargs)

    monkeypatch.setattr(tracker.client, "log_inputs", raced)
    tracker.log_dataset({"name": "dinos", "source": "https://example.org/dinos.txt",
                         "digest": "ab" * 32})
    assert len(calls) == 2 and tracker.unlogged() is None
    tracker.end()
    run = _client(sqlite_uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["dinos"]
