"""Nothing waits or stays in a wrong state unsaid: a sqlite store locked by another process is
named before MLflow's silent busy wait, and a sweep ends KILLED the child runs of jobs whose
process was killed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

from framework.tracking import run_owner
from framework.tracking.store_errors import LOCK_PROBE_SECONDS, warn_if_locked


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_store_locked_by_another_process_is_named_before_the_wait(tmp_path, capsys):
    db = tmp_path / "m.db"
    holder = sqlite3.connect(db)
    holder.execute("CREATE TABLE t (x)")
    holder.commit()
    assert warn_if_locked(db) is False and capsys.readouterr().err == ""
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the store
    try:
        started = time.monotonic()
        assert warn_if_locked(db) is True
        assert time.monotonic() - started < LOCK_PROBE_SECONDS + 1.0
    finally:
        holder.rollback()
        holder.close()
    err = capsys.readouterr().err
    assert err == (f"rnnlab: warning: the MLflow store {db} is locked by another process; "
                   f"waiting up to 20 s (MLflow's sqlite busy timeout) for it to finish\n")
    # The probe wrote nothing and left no lock behind.
    check = sqlite3.connect(db, timeout=0.1)
    check.execute("BEGIN IMMEDIATE")
    check.rollback()
    assert check.execute("SELECT count(*) FROM t").fetchone() == (0,)
    check.close()


def test_no_warning_for_a_missing_or_read_only_or_non_sqlite_file(tmp_path, capsys):
    assert warn_if_locked(tmp_path / "none.db") is False
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 10)
    assert warn_if_locked(junk) is False
    assert capsys.readouterr().err == ""


class _Client:
    """Enough of MlflowClient for settling: runs by id, tags and status changes recorded."""

    def __init__(self, runs: dict[str, tuple[str, str | None]]) -> None:
        self.runs = {rid: SimpleNamespace(info=SimpleNamespace(run_id=rid, status=status),
                                          data=SimpleNamespace(tags={} if tag is None else
                                                               {run_owner.OWNER_TAG: tag}))
                     for rid, (status, tag) in runs.items()}
        self.ended: dict[str, str] = {}

    def get_run(self, run_id: str):
        return self.runs[run_id]

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.runs[run_id].data.tags[key] = value

    def set_terminated(self, run_id: str, status: str) -> None:
        self.ended[run_id] = status
        self.runs[run_id].info.status = status


def test_a_sweep_ends_killed_only_the_runs_whose_process_is_gone():
    import socket

    host = socket.gethostname()
    dead = _dead_pid()
    client = _Client({
        "killed": ("RUNNING", f"{host} {dead} ?"),
        "alive": ("RUNNING", run_owner.owner_tag()),
        "finished": ("FINISHED", f"{host} {dead} ?"),
        "elsewhere": ("RUNNING", f"another-machine {dead} 1"),
        "untagged": ("RUNNING", None),
    })
    assert run_owner.settle_abandoned(client, list(client.runs.values())) == ["killed"]
    assert client.ended == {"killed": "KILLED"}
    reason = client.runs["killed"].data.tags[run_owner.FAILURE_REASON_TAG]
    assert f"pid {dead} on {host}" in reason and "ended without ending the run" in reason


def test_a_store_that_fails_while_settling_leaves_the_run_for_the_next_resume():
    import socket

    client = _Client({"killed": ("RUNNING", f"{socket.gethostname()} {_dead_pid()} ?")})

    def refuse(run_id: str, status: str) -> None:
        raise ConnectionRefusedError("store down")

    client.set_terminated = refuse
    assert run_owner.settle_abandoned(client, list(client.runs.values())) == []


def test_the_sweep_says_which_runs_it_ended_killed():
    from framework.sweeps.nested_runs import killed_line

    line = killed_line(["a" * 32, "b" * 32])
    assert "\n" not in line
    assert line.startswith("rnnlab: warning: 2 child run(s) were left RUNNING by a job whose "
                           "process was killed (" + "a" * 32 + ", " + "b" * 32 + "); they are "
                           "now marked KILLED")


def test_the_lock_is_probed_before_mlflow_opens_the_store(monkeypatch, tmp_path):
    """MLflow's client opens (and migrates) a sqlite store as it is made, waiting for a lock
    there: the probe must come first to say what is waited on."""
    import mlflow

    from framework.tracking import tracker

    order: list[str] = []

    class Client:
        def __init__(self, tracking_uri: str) -> None:
            order.append("client")

        def search_experiments(self, max_results: int) -> list:
            return []

    monkeypatch.setattr(mlflow, "MlflowClient", Client)
    monkeypatch.setattr(tracker, "warn_if_locked", lambda db: order.append(f"probe {db.name}"))
    tracker.make_client(f"sqlite:///{tmp_path / 'm.db'}")
    assert order == ["probe m.db", "client"]
