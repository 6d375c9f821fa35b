"""Faults during training: divergence, SIGINT/SIGTERM, and kill -9 at random moments.

Everything here drives a real ``python -m framework`` process (except the NaN-save unit check):
the properties are about what a user sees - exit status, the message, the files left behind and
the MLflow run's status - so they are tested where they happen.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framework import ROOT
from framework.errors import DivergenceError
from framework.training.checkpoint import load_checkpoint, step_path
from framework.training.trainer import Reporter, Trainer
from tests.conftest import needs_data
from tests.helpers import QUICK, run_cli, run_config, sqlite_store

TINY = ["cell.hidden_size=8", "train.batch_size=4", "train.seq_len=8", "train.eval_every=0",
        "train.sample_every=0", "train.log_every=5", "mlflow.log_model=false"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return env


def _runs(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select run_uuid, status from runs").fetchall()


def _tag(db: Path, run_id: str, key: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("select value from tags where run_uuid=? and key=?",
                           (run_id, key)).fetchone()
    return row[0] if row else None


def _params(path: Path) -> dict[str, np.ndarray]:
    arrays, _ = load_checkpoint(path)
    return {k: v for k, v in arrays.items() if not k.startswith("__")}


# --------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("args, step, good, tracked", [
    # the example: the first update explodes, so no checkpoint was ever verified good
    (["optimizer=adam", "optimizer.lr=1e9"], 1, None, True),
    # a slower blow-up: the checkpoint after 2 updates gave a sane loss at step 2
    (["optimizer=sgd", "optimizer.lr=100"], 3, 2, False),
], ids=["adam-lr1e9", "sgd-lr100"])
@needs_data("dinos.txt")
def test_divergence_stops_fails_the_run_and_names_the_last_good_checkpoint(tmp_path, args, step,
                                                                         good, tracked):
    db = tmp_path / "m.db"
    tracking = f"mlflow.tracking_uri={sqlite_store(db)}" if tracked else "mlflow.enabled=false"
    proc = run_cli("framework", ["cell=rnn", "clip=none", *TINY, *args, "train.steps=40",
                                 "train.checkpoint_every=1", "hydra.run.dir=run", tracking],
                   tmp_path)
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rnnlab:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = errors[0]
    assert f"training diverged at step {step}: loss" in line, line
    assert "try a lower optimizer.lr" in line and "clip=norm" in line, line
    ckpts = tmp_path / "run" / "checkpoints"
    if good is None:
        assert "last good checkpoint: none" in line, line
    else:
        named = step_path(ckpts, good)
        assert f"last good checkpoint: {named}" in line, line
        arrays, meta = load_checkpoint(named)
        assert meta["step"] == good < step
        assert all(np.isfinite(v).all() for v in arrays.values())
    # Nothing half-written or non-finite was left as the latest checkpoint.
    arrays, meta = load_checkpoint(ckpts / "latest.npz")
    assert meta["step"] == step and all(np.isfinite(v).all() for v in arrays.values())
    if not tracked:
        return
    (run_id, status), = _runs(db)
    assert status == "FAILED"
    reason = _tag(db, run_id, "rnnlab.failure_reason")
    assert reason is not None and f"training diverged at step {step}" in reason


@needs_data("dinos.txt")
def test_nonfinite_parameters_are_never_saved(tmp_path):
    class Quiet:
        def log_metrics(self, values: dict, step: int) -> None:
            pass

    trainer = Trainer(run_config([*QUICK, "cell=rnn", "train.steps=2"]), out_dir=tmp_path,
                      reporter=Reporter(Quiet(), lambda _: None))
    trainer.run()
    before = (tmp_path / "checkpoints" / "latest.npz").read_bytes()
    trainer.model.params["out.b"][0] = np.nan
    trainer.step += 1
    with pytest.raises(DivergenceError, match="parameters became NaN/Inf"):
        trainer.save()
    assert (tmp_path / "checkpoints" / "latest.npz").read_bytes() == before
    assert not step_path(tmp_path / "checkpoints", trainer.step).exists()


@needs_data("dinos.txt")
def test_resume_right_after_the_short_last_batch_of_an_epoch(tmp_path):
    """Names feed: the epoch's last batch is short, so the carried state saved after it is
    narrower than train.batch_size.  Resuming there used to be refused ("resume with the batch
    size it was trained with"); it must continue bit-identically instead."""
    class Quiet:
        def log_metrics(self, values: dict, step: int) -> None:
            pass

    base = [*QUICK, "cell=lstm", "dataset=dinos", "train.eval_every=0", "train.sample_every=0",
            "train.num_samples=0", "train.checkpoint_every=0", "model.dropout=0.2"]

    def trainer(steps: int, name: str) -> Trainer:
        return Trainer(run_config([*base, f"train.steps={steps}"]), out_dir=tmp_path / name,
                       reporter=Reporter(Quiet(), lambda _: None))

    probe = trainer(1, "probe")
    epoch = probe.feed.steps_per_epoch
    short = probe.feed.batch(epoch - 1).inputs.shape[1]
    assert short < probe.rc.train.batch_size, "dinos/4 should end its epoch with a short batch"
    half = trainer(epoch, "half")
    half.run()
    assert half.state[0][0].shape[0] == short
    resumed = trainer(epoch + 5, "resumed")
    resumed.restore(half.last_checkpoint)
    resumed.run()
    full = trainer(epoch + 5, "full")
    full.run()
    for name, value in full.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], value, err_msg=name)


# --------------------------------------------------------------------------- SIGINT / SIGTERM
def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


SIGNAL_CASES = {
    # stream feed: the carried hidden state must be checkpointed too
    "SIGTERM-stream": (signal.SIGTERM, ["dataset=sonnets", "cell=gru",
                                        "optimizer=adagrad"]),
    # names feed with dropout: the dropout masks come from (seed, step)
    "SIGINT-names-dropout": (signal.SIGINT, ["dataset=dinos", "cell=lstm", "model.dropout=0.2"]),
}


@pytest.mark.parametrize("case", [
    "SIGTERM-stream",
    pytest.param("SIGINT-names-dropout", marks=pytest.mark.slow),
])
@needs_data("dinos.txt", "sonnets.txt")
def test_signal_checkpoints_kills_the_run_and_resume_is_bit_identical(tmp_path, case):
    signum, extra = SIGNAL_CASES[case]
    base = [*TINY, *extra, "train.checkpoint_every=25"]
    db = tmp_path / "m.db"
    sqlite_store(db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework", *base, "train.steps=1000000",
         "hydra.run.dir=interrupted", f"mlflow.tracking_uri=sqlite:///{db}"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "interrupted" / "checkpoints" / "latest.npz", proc)
        time.sleep(0.3)  # somewhere in the middle of later steps
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    name = signal.Signals(signum).name
    match = re.search(rf"rnnlab: interrupted by {name}; checkpoint saved, continue with "
                      r"resume=(\S+)", err)
    assert match, err
    saved = Path(match.group(1))
    _, meta = load_checkpoint(saved)
    stopped_at = meta["step"]
    assert stopped_at >= 1
    (run_id, status), = _runs(db)
    assert status == "KILLED"
    assert _tag(db, run_id, "rnnlab.failure_reason") == f"interrupted by {name}"

    total = stopped_at + 9
    off = "mlflow.enabled=false"
    # The signal needed a real process; resuming and the reference run do not.
    resumed = run_cli("framework", [*base, f"train.steps={total}", f"resume={saved}",
                                    "hydra.run.dir=resumed", off], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {saved} at step {stopped_at}" in resumed.stdout
    reference = run_cli("framework", [*base, f"train.steps={total}", "hydra.run.dir=reference",
                                      off], tmp_path)
    assert reference.returncode == 0, reference.stderr
    a = _params(tmp_path / "resumed" / "checkpoints" / "latest.npz")
    b = _params(tmp_path / "reference" / "checkpoints" / "latest.npz")
    assert set(a) == set(b) and any(k.startswith("optim/") for k in a)
    for key in a:  # parameters, optimizer state and carried hidden state, bit for bit
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key}, stopped at {stopped_at}")


@pytest.mark.slow  # ~15-30 s; the default suite keeps its 10-minute budget
# --------------------------------------------------------------------------- kill -9
@needs_data("tinyshakespeare.txt")
def test_kill9_at_random_moments_never_corrupts_checkpoints(tmp_path):
    """SIGKILL the real training process (checkpoint every step) again and again; every
    checkpoint file left behind loads, and each restart resumes from latest.npz."""
    rnd = random.Random(7)
    ckpts = tmp_path / "run" / "checkpoints"
    # A bigger model makes the checkpoint write the larger part of every step.
    args = ["cell=lstm", "cell.hidden_size=96", "train.batch_size=4", "train.seq_len=8",
            "dataset=tinyshakespeare", "train.eval_every=0", "train.sample_every=0",
            "train.checkpoint_every=1", "train.steps=1000000", "hydra.run.dir=run",
            "mlflow.enabled=false"]
    last_step, mid_write, round_ = 0, 0, 0
    # Keep killing until at least one kill landed inside a checkpoint write (it leaves a temp
    # file behind), with at least 3 rounds; the write is most of each step, so that is quick.
    while round_ < 3 or (mid_write == 0 and round_ < 8):
        resume = [f"resume={tmp_path / 'run'}"] if round_ else []
        seen = max((int(p.stem[5:]) for p in ckpts.glob("step_*.npz")), default=0)
        proc = subprocess.Popen([sys.executable, "-m", "framework", *args, *resume],
                                cwd=tmp_path, env={**_env(), "PYTHONUNBUFFERED": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            t0 = time.monotonic()
            # Wait until this process has written a checkpoint of its own.
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"training ended early: {proc.communicate()}")
                steps = [int(p.stem[5:]) for p in ckpts.glob("step_*.npz")]
                if steps and max(steps) > seen:
                    break
                assert time.monotonic() - t0 < 120, "no checkpoint within 120 s"
                time.sleep(0.02)
            time.sleep(rnd.uniform(0.0, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
        if round_:  # unbuffered stdout: the line survives the SIGKILL
            assert f"resumed from {ckpts / 'latest.npz'} at step " in out, out[-500:]
        temps = list(ckpts.glob(".tmp-*"))
        mid_write += bool(temps)
        for tmp in temps:  # the killed writer's partial file: never a name anyone loads
            tmp.unlink()
        files = sorted(p for p in ckpts.glob("*.npz") if not p.name.startswith("."))
        for path in files:  # latest.npz, best.npz and every step file: all complete
            arrays, meta = load_checkpoint(path)
            assert all(np.isfinite(v).all() for v in arrays.values()), path
        _, meta = load_checkpoint(ckpts / "latest.npz")
        # Killed between writing step_N and re-linking latest.npz, latest still names the
        # previous step: old but whole.  It never goes back.
        assert meta["step"] >= last_step
        last_step = meta["step"]
        round_ += 1
    assert mid_write >= 1, "no kill landed inside a checkpoint write"
