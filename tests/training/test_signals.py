"""Stop signals at any moment: SIGINT twice, SIGHUP, SIGTERM during the final logging.

A signal is recorded, never raised inside checkpoint writing or MLflow logging, so the run always
ends KILLED with its metrics flushed and the checkpoint to resume from printed.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.errors import RnnlabError
from framework.training.runtime import Interrupted, StopSignals
from tests.conftest import needs_data
from tests.helpers import QUICK, compose_config, data_env, sqlite_store

TINY = ["cell=rnn", "cell.hidden_size=8", "train.batch_size=4", "train.seq_len=8",
        "train.eval_every=0", "train.sample_every=0", "train.log_every=1",
        "mlflow.log_model=false", "train.checkpoint_every=50"]


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    db = tmp_path / "m.db"
    sqlite_store(db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework", *TINY, *extra, "train.steps=1000000",
         "hydra.run.dir=run", f"mlflow.tracking_uri=sqlite:///{db}"],
        cwd=tmp_path, env=data_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    latest = tmp_path / "run" / "checkpoints" / "latest.npz"
    t0 = time.monotonic()
    while not latest.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        assert time.monotonic() - t0 < 120, "no checkpoint within 120 s"
        time.sleep(0.05)
    time.sleep(0.3)
    return proc, db


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_row(db: Path) -> tuple[str, str, int]:
    with sqlite3.connect(db) as conn:
        (run_id, status), = conn.execute("select run_uuid, status from runs").fetchall()
        (n,), = conn.execute("select count(*) from metrics where run_uuid=? and key='train_loss'",
                             (run_id,)).fetchall()
    return run_id, status, n


@pytest.mark.parametrize("signals", [
    (signal.SIGINT, signal.SIGINT),                   # Ctrl-C pressed twice
    # Each case is a process training until it is stopped: the variations run in the slow stage.
    pytest.param((signal.SIGINT, signal.SIGINT, signal.SIGTERM),  # and then a kill
                 marks=pytest.mark.slow),
    pytest.param((signal.SIGHUP,), marks=pytest.mark.slow),  # the terminal or SSH session closed
])
@needs_data("dinos.txt")
def test_signals_in_quick_succession_end_the_run_cleanly(tmp_path, signals):
    proc, db = _start(tmp_path)
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(0.01)
    out, err = _finish(proc)
    first = signal.Signals(signals[0]).name
    assert proc.returncode == 128 + signals[0], err
    assert "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("rnnlab:")]) == 1, err
    match = re.search(rf"interrupted by {first}; checkpoint saved, continue with resume=(\S+)",
                      err)
    assert match and Path(tmp_path, match.group(1)).is_file(), err
    _, status, logged = _run_row(db)
    assert status == "KILLED"
    assert logged >= 50  # the buffered step metrics were flushed (one per step, >= 50 steps)


@needs_data("dinos.txt")
def test_sigterm_during_final_logging_names_the_checkpoint(tmp_path, monkeypatch):
    """The run finished training and wrote its checkpoint; a SIGTERM while artifacts are logged
    skips the rest, ends the run KILLED and names that checkpoint (not "no checkpoint")."""
    from framework.cli import train as app
    from framework.tracking import tracker as tracking
    from framework.tracking.protocol import NullTracker

    ended = []

    class Recording(NullTracker):
        def start(self, params=None, tags=None, on_start=None, continue_run=None,
                  previous_run=None) -> str:
            return "run"

        def log_text(self, text, path) -> None:
            signal.raise_signal(signal.SIGTERM)  # arrives in the middle of the final logging

        def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
            ended.append((status, reason))

    monkeypatch.setattr(tracking.MlflowTracker, "from_config",
                        classmethod(lambda cls, cfg: Recording()))
    monkeypatch.chdir(tmp_path)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        app.run(compose_config([*QUICK, "cell=rnn", "train.steps=3"]))
    assert signal.getsignal(signal.SIGTERM) is previous  # the app restored the handler
    assert info.value.checkpoint is not None and Path(info.value.checkpoint).is_file()
    assert ended == [("KILLED", "interrupted by SIGTERM")]


def test_a_signal_before_training_stops_at_once_without_a_run():
    stop = StopSignals()
    with stop, pytest.raises(KeyboardInterrupt), stop.raising():
        signal.raise_signal(signal.SIGINT)
    assert stop.signum == signal.SIGINT
    with stop:  # outside raising(): recorded only
        signal.raise_signal(signal.SIGTERM)
    assert stop.count == 2


def test_ctrl_c_in_generate_is_a_clean_exit(tmp_path):
    code = ("import signal, sys\n"
            "sys.argv = ['generate', 'checkpoint=missing.npz']\n"
            "import framework.cli.generate as g\n"
            "def boom(cfg): raise KeyboardInterrupt\n"
            "g.run = boom\n"
            "sys.exit(g.main())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=data_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "rnnlab: interrupted", proc.stderr
    assert issubclass(Interrupted, Exception) and not issubclass(Interrupted, RnnlabError)
