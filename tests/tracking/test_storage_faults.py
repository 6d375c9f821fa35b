"""Storage faults are one line naming the path and the cause, and lose nothing.

Disk full and read-only folders are simulated with monkeypatched system calls in the default
suite; the real thing (a full tmpfs, a read-only mount) runs as root in the slow stage.  The
MLflow store's faults (locked, read-only) are mapped from the exception chain MLflow raises.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framework.errors import StorageError, TrackingError
from framework.training import checkpoint as ckpt
from framework.training.checkpoint import files as ckpt_files
from tests.conftest import needs_data
from tests.helpers import QUICK, compose_config, data_env

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def _arrays(value: float) -> dict:
    """The arrays of a small valid checkpoint, every parameter equal to ``value``."""
    from tests.helpers import model_checkpoint

    return model_checkpoint(fill=value)[0]


def _meta(step: int) -> dict:
    from tests.helpers import model_checkpoint

    return model_checkpoint(step=step)[1]


def _fail_with(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


def _half_write_then_fail(code: int):
    def savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError(code, os.strerror(code))
    return savez


# --------------------------------------------------------------------------- checkpoint writes
@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "[ENOSPC]"), (errno.EDQUOT, "[EDQUOT]"),
                                         (errno.EIO, "[EIO]")])
def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, monkeypatch,
                                                                         code, cause):
    first = ckpt.save_rolling(tmp_path, 1, _arrays(1.0), _meta(1))
    monkeypatch.setattr(ckpt_files.np, "savez", _half_write_then_fail(code))
    with pytest.raises(StorageError) as info:
        ckpt.save_rolling(tmp_path, 2, _arrays(2.0), _meta(2))
    message = str(info.value)
    assert "\n" not in message and cause in message
    assert message.startswith(f"cannot write checkpoint {tmp_path / 'step_000002.npz'}: ")
    assert "checkpoints already in" in message and "are intact" in message
    monkeypatch.undo()
    arrays, meta = ckpt.load_checkpoint(tmp_path / "latest.npz")
    assert meta["step"] == 1 and arrays["param/layers.0.W_x"].flat[0] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.npz", first.name]  # no temp


def test_a_read_only_checkpoint_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt_files.tempfile, "mkstemp", _fail_with(errno.EROFS))
    with pytest.raises(StorageError, match=r"Read-only file system \[EROFS\]"):
        ckpt.save_checkpoint(tmp_path / "c.npz", _arrays(1.0), _meta(1))
    monkeypatch.setattr(ckpt_files.tempfile, "mkstemp", _fail_with(errno.EACCES))
    with pytest.raises(StorageError, match=r"Permission denied \[EACCES\]"):
        ckpt.save_checkpoint(tmp_path / "c.npz", _arrays(1.0), _meta(1))


def test_disk_full_while_relinking_latest_leaves_the_old_latest(tmp_path, monkeypatch):
    ckpt.save_rolling(tmp_path, 1, _arrays(1.0), _meta(1), best=True)
    monkeypatch.setattr(ckpt_files.os, "link", _fail_with(errno.EXDEV))  # no hard links: a copy

    def copy_half(src, dst):
        Path(dst).write_bytes(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_files.shutil, "copyfile", copy_half)
    with pytest.raises(StorageError, match=r"cannot write checkpoint .*latest\.npz: .*ENOSPC"):
        ckpt.save_rolling(tmp_path, 2, _arrays(2.0), _meta(2))
    monkeypatch.undo()
    assert ckpt.load_checkpoint(tmp_path / "latest.npz")[1]["step"] == 1
    assert not list(tmp_path.glob(f"{ckpt.TMP_PREFIX}*"))  # the half copy was removed


@needs_data("dinos.txt")
def test_training_stops_on_a_full_disk_with_the_run_failed_and_latest_intact(tmp_path,
                                                                             monkeypatch):
    from framework.cli import train as app

    monkeypatch.chdir(tmp_path)
    real_savez, calls = np.savez, []

    def savez_fills_the_disk(fh, **arrays):
        calls.append(1)
        if len(calls) > 2:
            return _half_write_then_fail(errno.ENOSPC)(fh, **arrays)
        return real_savez(fh, **arrays)

    monkeypatch.setattr(ckpt_files.np, "savez", savez_fills_the_disk)
    db = tmp_path / "m.db"
    cfg = compose_config([*QUICK, "cell=rnn", "train.eval_every=0", "train.checkpoint_every=2",
                          "mlflow.enabled=true", f"mlflow.tracking_uri=sqlite:///{db}"])
    with pytest.raises(StorageError) as info:
        app.run(cfg)
    assert "No space left on device [ENOSPC]" in str(info.value)
    latest = tmp_path / "checkpoints" / "latest.npz"
    monkeypatch.undo()
    assert ckpt.load_checkpoint(latest)[1]["step"] == 3  # the second save, whole
    with sqlite3.connect(db) as conn:
        (status,), = conn.execute("select status from runs").fetchall()
        (reason,), = conn.execute(
            "select value from tags where key='rnnlab.failure_reason'").fetchall()
    assert status == "FAILED" and "ENOSPC" in reason


# --------------------------------------------------------------------------- the output folder
@pytest.mark.parametrize("raise_it", [
    lambda: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system", "out/run")),
    # logging.config wraps the file handler's OSError in a ValueError
    lambda: _raise_from(ValueError("Unable to configure handler 'file'"),
                        PermissionError(errno.EACCES, "Permission denied", "out/run/x.log")),
])
def test_an_unwritable_output_folder_is_one_line(raise_it):
    from framework.cli.overrides import run_hydra

    with pytest.raises(StorageError) as info:
        run_hydra(raise_it)
    assert str(info.value).startswith("cannot write out/run")
    assert "set hydra.run.dir" in str(info.value)


def _raise_from(exc: BaseException, cause: BaseException):
    raise exc from cause


def test_other_os_errors_are_not_called_storage_faults():
    from framework.cli.overrides import run_hydra

    def boom():
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    with pytest.raises(ConnectionResetError):
        run_hydra(boom)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@needs_data("dinos.txt")
def test_real_process_read_only_output_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        proc = subprocess.run([sys.executable, "-m", "framework", *QUICK,
                               f"hydra.run.dir={folder / 'run'}"], cwd=tmp_path, env=data_env(),
                              capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"rnnlab: error: cannot write {folder / 'run'}: Permission denied [EACCES]; set "
        f"hydra.run.dir= to a writable folder with free space, or run from one"]


@pytest.mark.parametrize("args, setting", [
    (["hydra.run.dir={file}/run"], "hydra.run.dir"),
    (["hydra.run.dir={file}"], "hydra.run.dir"),
    (["-m", "hydra.sweep.dir={file}/sweep"], "hydra.sweep.dir"),
])
def test_an_output_folder_through_a_file_is_one_line_naming_the_setting(tmp_path, args,
                                                                        setting):
    """Tests run as root here, where a read-only folder is still writable: a path through a
    file (ENOTDIR) or onto one (EEXIST) cannot be created by anyone."""
    from tests.helpers import run_cli

    file = tmp_path / "a-file"
    file.write_text("x")
    argv = [a.format(file=file) for a in args]
    flag = [a for a in argv if a == "-m"]
    proc = run_cli("framework", [*flag, *QUICK, *[a for a in argv if a != "-m"]], cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    target = argv[-1].split("=", 1)[1]
    assert line.startswith(f"rnnlab: error: cannot write {target}: ")
    assert line.endswith(f"; set {setting}= to a writable folder with free space, or run from "
                         f"one")
    assert not list(tmp_path.glob("outputs")) and not list(tmp_path.glob("multirun"))


# --------------------------------------------------------------------------- the MLflow store
def _mlflow_chain(sqlite_message: str) -> Exception:
    """What MLflow raises for a failed sqlite write: sqlite3 -> SQLAlchemy -> MlflowException."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    low = sqlite3.OperationalError(sqlite_message)
    mid = sqlalchemy.exc.OperationalError(
        "(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush "
        "block if this flush is occurring prematurely)\nINSERT INTO runs ...", {}, low)
    try:
        try:
            raise mid from low
        except sqlalchemy.exc.OperationalError as exc:
            raise MlflowException(message=str(exc)) from exc
    except MlflowException as top:
        return top


@pytest.mark.parametrize("sqlite_message, meaning", [
    ("database is locked", "is locked by another process (sqlite: database is locked)"),
    ("attempt to write a readonly database", "is read-only (sqlite: readonly database)"),
    ("database or disk is full", "is on a full disk"),
    ("unable to open database file", "cannot be opened"),
])
def test_store_faults_are_named_behind_sqlalchemys_autoflush_message(sqlite_message, meaning):
    from framework.tracking.store_errors import describe, first_line

    exc = _mlflow_chain(sqlite_message)
    text = describe(exc, "/data/mlflow.db")
    assert text.startswith(f"the MLflow store /data/mlflow.db {meaning}") and "\n" not in text
    assert "autoflush" not in first_line(exc)


def test_a_failed_start_on_a_locked_store_is_one_line(tmp_path, monkeypatch):
    from framework.tracking.tracker import MlflowTracker

    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'm.db'}")
    tracker.check_reachable()

    def locked(*args, **kwargs):
        raise _mlflow_chain("database is locked")

    monkeypatch.setattr(tracker.client, "create_run", locked)
    with pytest.raises(TrackingError) as info:
        tracker.start(params={"a": 1})
    assert str(info.value) == (
        f"the MLflow store {tmp_path / 'm.db'} is locked by another process (sqlite: database is "
        f"locked); wait for that process to finish, or use another mlflow.tracking_uri")


def test_a_locked_store_mid_run_warns_in_one_line_and_keeps_the_metrics(tmp_path, monkeypatch,
                                                                        caplog):
    from framework.tracking.tracker import MlflowTracker

    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'm.db'}", flush_every_metrics=10**6)
    run_id = tracker.start()
    tracker.log_metrics({"loss": 1.0}, 0)
    real = tracker.client.log_batch
    monkeypatch.setattr(tracker.client, "log_batch",
                        lambda *a, **k: (_ for _ in ()).throw(_mlflow_chain("database is locked")))
    with caplog.at_level(logging.WARNING, logger="rnnlab.tracking"):
        assert tracker.flush() is False
    (record,) = [r for r in caplog.records if r.name == "rnnlab.tracking"]
    assert "is locked by another process" in record.getMessage()
    assert "keeping 1 metric values" in record.getMessage()
    monkeypatch.setattr(tracker.client, "log_batch", real)
    tracker.end()
    history = tracker.client.get_metric_history(run_id, "loss")
    assert [m.value for m in history] == [1.0]


def test_mlflows_own_traceback_log_of_a_store_error_is_dropped(caplog):
    from framework.tracking.store_errors import quiet_store_tracebacks

    quiet_store_tracebacks()
    logger = logging.getLogger("mlflow.store.db.utils")
    with caplog.at_level(logging.ERROR, logger="mlflow.store.db.utils"):
        logger.error("SQLAlchemy database error. The following exception is caught.\n%s", "x")
        logger.error("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def _hold_exclusive_lock(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


@pytest.mark.slow
def test_real_locked_store_is_one_line_naming_it(tmp_path):
    """Another process holds an exclusive lock: one line after MLflow's 20 s busy timeout."""
    from framework.tracking.tracker import make_client

    db = tmp_path / "m.db"
    make_client(f"sqlite:///{db}")  # create the schema
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(120)"), str(db)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(TrackingError) as info:
            make_client(f"sqlite:///{db}")
        assert time.monotonic() - t0 < 90
    finally:
        holder.kill()
        holder.wait()
    assert str(info.value).startswith(f"the MLflow store {db} is locked by another process")


# --------------------------------------------------------------------------- real faults (root)
@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs of the given size (and options) under tmp_path; unmounted afterwards."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


@pytest.mark.slow
@ROOT_ONLY
@needs_data("dinos.txt")
def test_real_full_disk_during_training(tmp_path, tmpfs):
    # Room for the first two ~1 MB checkpoints of the default LSTM and little more.
    disk = tmpfs("full", "size=2200k")
    proc = subprocess.run([sys.executable, "-m", "framework", "train.steps=60",
                           "train.checkpoint_every=10", "train.sample_every=0",
                           f"hydra.run.dir={disk / 'run'}",
                           f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"],
                          cwd=tmp_path, env=data_env(), capture_output=True, text=True,
                          timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rnnlab: error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and "No space left on device [ENOSPC]" in errors[0]
    latest = disk / "run" / "checkpoints" / "latest.npz"
    arrays, meta = ckpt.load_checkpoint(latest)
    assert meta["step"] >= 1 and all(np.isfinite(a).all() for a in arrays.values()
                                     if a.dtype.kind == "f")
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("select status from runs").fetchall() == [("FAILED",)]


@pytest.mark.slow
@ROOT_ONLY
@needs_data("dinos.txt")
def test_real_read_only_mounts(tmp_path, tmpfs):
    ro = tmpfs("ro", "size=1m,ro")
    proc = subprocess.run([sys.executable, "-m", "framework", *QUICK,
                           f"hydra.run.dir={ro / 'run'}"], cwd=tmp_path, env=data_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"rnnlab: error: cannot write {ro / 'run'}: Read-only file system [EROFS]; set "
        f"hydra.run.dir= to a writable folder with free space, or run from one"]
    # A read-only MLflow store: the same one line, before the first training step.
    store = tmpfs("store", "size=8m")
    subprocess.run([sys.executable, "-c", "import sys; from framework.tracking.tracker import "
                    "make_client; make_client(sys.argv[1])", f"sqlite:///{store / 'm.db'}"],
                   env=data_env(), check=True, capture_output=True)  # nothing left open here
    subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
    proc = subprocess.run([sys.executable, "-m", "framework", *QUICK[:-1],
                           f"hydra.run.dir={tmp_path / 'run'}",
                           f"mlflow.tracking_uri=sqlite:///{store / 'm.db'}"],
                          cwd=tmp_path, env=data_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"rnnlab: error: the MLflow store {store / 'm.db'} is read-only (sqlite: readonly "
        f"database); make the file and its folder writable, or use another mlflow.tracking_uri")
    assert not list((tmp_path / "run").rglob("*.npz"))
