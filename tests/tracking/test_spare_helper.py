"""Spare MLflow helpers: a tracked job uses the one waiting and leaves the next; a spare of other
code is not used but replaced; an idle spare exits; a folder others can open holds none."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from framework.tracking import spare, tracker_process
from framework.tracking.spare import IDLE_ENV, SpareProcess
from framework.tracking.tracker_process import TrackerProcess, open_tracker, prestart
from framework.training.config import MlflowConfig
from tests.conftest import needs_data
from tests.helpers import ROOT, sqlite_store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="spare helpers use Unix sockets")


@pytest.fixture()
def spares_on(tmp_path, monkeypatch):
    """Spare helpers on, in a temporary folder of this test's own (short: a Unix socket's path
    holds 107 bytes); every spare stopped after. (``tmp_path`` first: pytest then places its
    temporary folders before the temporary folder changes here.)"""
    temp = Path(tempfile.mkdtemp(prefix="spare-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv(IDLE_ENV, "120")
    monkeypatch.setattr(spare, "_started", None)
    yield temp
    spare.stop_spares(temp, settle=0.5)
    shutil.rmtree(temp, ignore_errors=True)


def _sockets(temp: Path) -> list[Path]:
    return sorted((temp / f"rnnlab-{os.getuid()}").glob("*.sock"))


def _wait_for(condition, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def test_a_job_logs_its_run_through_the_waiting_spare(spares_on, tmp_path, monkeypatch):
    uri = sqlite_store(tmp_path / "mlflow.db")  # first: it sets an MLFLOW_* variable here
    first = spare.leave_spare()
    assert first is not None
    _wait_for(lambda: _sockets(spares_on), "the spare's socket")
    monkeypatch.setattr(tracker_process, "_prestarted", None)
    prestart(["cell=rnn"])
    assert isinstance(tracker_process._prestarted, SpareProcess)
    assert tracker_process._prestarted.pid == first.pid
    tracker = open_tracker(MlflowConfig(tracking_uri=uri, experiment_name="t"), multirun=False)
    assert isinstance(tracker, TrackerProcess)
    started: list[str] = []
    tracker.check_reachable()
    tracker.start(params={"cell.name": "rnn"}, on_start=started.append)
    for step in range(1, 4):
        tracker.log_metrics({"loss": 1.0 / step}, step)
    tracker.log_loss_curve({"train_loss": [(1, 1.0), (2, 0.5), (3, 1 / 3)]}, "loss_curve.png")
    tracker.end()
    assert first.wait(timeout=30) == 0  # it served this job, then exited
    assert tracker.unlogged() is None and started == [tracker.run_id]
    client = _client(uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"cell.name": "rnn"}
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [
        1.0, 0.5, pytest.approx(1 / 3)]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"loss_curve.png"}
    assert run.data.tags["rnnlab.owner"].split()[1] == str(os.getpid())  # this job owns it
    _wait_for(lambda: _sockets(spares_on), "the next spare, left by the job")


def test_two_jobs_starting_together_get_the_spare_once(spares_on):
    first = spare.leave_spare()
    _wait_for(lambda: _sockets(spares_on), "the spare's socket")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        claimed = list(pool.map(lambda _: spare.claim(), range(2)))
    winners = [c for c in claimed if c is not None]
    assert len(winners) == 1 and winners[0].pid == first.pid
    winners[0].kill()  # a job that hangs up before its run: the spare exits, nothing logged
    assert first.wait(timeout=60) == 0


def test_a_killed_spare_is_passed_over_and_replaced(spares_on):
    dead = spare.leave_spare()
    _wait_for(lambda: _sockets(spares_on), "the spare's socket")
    dead.kill()
    dead.wait(timeout=30)
    assert _sockets(spares_on)  # kill -9 leaves its socket file behind
    assert spare.claim() is None  # nobody answers there: a fresh helper instead
    new = spare.leave_spare()
    claimed: list[SpareProcess] = []
    _wait_for(lambda: claimed.append(spare.claim()) or claimed[-1] is not None,
              "a new spare on the same socket path")
    assert claimed[-1].pid == new.pid
    claimed[-1].kill()
    assert new.wait(timeout=60) == 0


def test_a_waiting_spare_ended_by_sigterm_removes_its_socket(spares_on):
    waiting = spare.leave_spare()
    _wait_for(lambda: _sockets(spares_on), "the spare's socket")
    time.sleep(0.5)  # into its imports
    waiting.send_signal(signal.SIGTERM)
    assert waiting.wait(timeout=30) == 0
    assert not _sockets(spares_on)


def test_no_spare_is_claimed_when_spares_are_off(spares_on, monkeypatch):
    first = spare.leave_spare()
    _wait_for(lambda: _sockets(spares_on), "the spare's socket")
    monkeypatch.setenv(IDLE_ENV, "0")
    assert spare.claim() is None and spare.leave_spare() is None
    assert first.poll() is None  # still waiting


def test_a_spare_of_other_code_is_not_used_and_the_next_one_replaces_it(spares_on,
                                                                        monkeypatch):
    monkeypatch.setenv("MLFLOW_SOMETHING_ELSE", "1")  # part of the code a spare runs
    stale = spare.leave_spare()
    _wait_for(lambda: _sockets(spares_on), "the stale spare's socket")
    monkeypatch.delenv("MLFLOW_SOMETHING_ELSE")
    assert spare.claim() is None
    fresh = spare.leave_spare()
    assert stale.wait(timeout=60) == 0  # asked to retire by the new one
    _wait_for(lambda: len(_sockets(spares_on)) == 1 and fresh.poll() is None, "the new spare")
    assert spare.names()[1] in _sockets(spares_on)[0].name


def test_an_idle_spare_exits_and_takes_its_socket(spares_on, monkeypatch):
    monkeypatch.setenv(IDLE_ENV, "0.5")
    waiting = spare.leave_spare()
    assert waiting.wait(timeout=60) == 0
    assert not _sockets(spares_on)


def test_a_folder_others_can_open_holds_no_spare(spares_on):
    folder = spares_on / f"rnnlab-{os.getuid()}"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    assert spare.leave_spare() is None and spare.claim() is None


def test_no_spare_where_a_socket_path_would_be_too_long(spares_on, monkeypatch):
    deep = spares_on / ("d" * 80)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    assert spare.leave_spare() is None and spare.claim() is None


@needs_data("dinos.txt")
def test_back_to_back_tracked_jobs_hand_the_spare_on(spares_on, tmp_path):
    """The command line: the first job starts a fresh helper and leaves a spare, the second
    uses that spare (which then exits) and leaves the next; both runs are complete."""
    uri = sqlite_store(tmp_path / "mlflow.db")
    args = [sys.executable, "-m", "framework", "cell=rnn", "dataset=dinos",
            "cell.hidden_size=8", "train.steps=2", "train.sample_every=0",
            "train.progress=never", f"mlflow.tracking_uri={uri}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def job(n: int) -> str:
        done = subprocess.run([args[0], "-X", "importtime", *args[1:],
                               f"hydra.run.dir={tmp_path / f'run{n}'}"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "matplotlib" in job(1)  # a fresh helper: the job draws the loss curve itself
    _wait_for(lambda: _sockets(spares_on), "the spare the first job left")
    pid = _spare_pid(spares_on)
    imported = job(2)
    assert "matplotlib" not in imported and "mlflow" not in imported  # the spare did it
    _wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the used spare's exit")
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(r.data.metrics.get("val_loss") for r in runs)


def _spare_pid(temp: Path) -> int:
    """The pid of the process listening on the one spare socket (from /proc/net/unix)."""
    path = str(_sockets(temp)[0])
    inodes = {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]
              if line.split()[-1] == path}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
            except OSError:
                continue
            if any(f"socket:[{inode}]" in links for inode in inodes):
                return int(proc.name)
    pytest.fail("no process listens on the spare's socket")
