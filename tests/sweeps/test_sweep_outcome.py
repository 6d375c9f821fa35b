"""How a sweep ends and what it refuses before it starts.

A failure every job shares stops a sweep at its first job; a sweep with failed jobs exits non-zero
with the count; an Optuna sweep is checked (objective direction, the stored study's search space
and fixed settings) before an MLflow parent run or a study is created.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from framework import ROOT
from framework.errors import ConfigError, DataError
from framework.sweeps.outcome import (
    JOB_FILE,
    Jobs,
    SweepFailed,
    count_jobs,
    final_error,
    shared_failure,
    write_stop,
)
from tests.helpers import run_cli

optuna = pytest.importorskip("optuna")


def _cli(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return subprocess.run([sys.executable, "-m", "framework", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _names(tmp_path: Path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("abc\nabd\nabe\nbcd\nbce\ncde\n" * 10)
    return path


def _job_dir(sweep: Path, num: int, record: dict | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("[]\n")
    if record is not None:
        (job / JOB_FILE).write_text(json.dumps({"num": num, **record}))


# ------------------------------------------------------------------------------ the contract
def test_a_failure_is_shared_when_it_names_no_swept_key():
    missing = DataError("dataset file /x.txt does not exist; fix dataset.path")
    assert shared_failure(missing, ["cell", "optimizer.lr"])
    assert not shared_failure(missing, ["dataset.path"])  # another file per job
    assert not shared_failure(ConfigError("cell.hidden_size must be > 0"), ["cell.hidden_size"])
    # 'cell' inside another key or word is not the swept key 'cell'
    assert shared_failure(ConfigError("model.cell_options are wrong"), ["cell"])
    assert not shared_failure(RuntimeError("anything"), [])  # not a one-line rnnlab error


def test_jobs_are_counted_from_their_records(tmp_path):
    _job_dir(tmp_path, 0, {"status": "COMPLETED", "return_value": 1.5, "failed": False})
    _job_dir(tmp_path, 1, {"status": "COMPLETED", "return_value": None, "failed": True,
                           "error": "cell 'gru': cell.hidden_size must be > 0, got 0"})
    _job_dir(tmp_path, 2, None)  # crashed before writing its record
    _job_dir(tmp_path, 3, {"status": "COMPLETED", "failed": False, "skipped": True})
    jobs = count_jobs(tmp_path)
    assert jobs == Jobs(4, 2, "cell 'gru': cell.hidden_size must be > 0, got 0", 1)
    error = final_error(jobs, tmp_path)
    assert isinstance(error, SweepFailed) and error.exit_code == 1
    assert str(error).startswith("2 of 4 jobs of the sweep failed (first: cell 'gru'")
    write_stop(tmp_path, DataError("dataset file /x.txt does not exist; fix dataset.path"))
    stop = final_error(jobs, tmp_path)
    assert stop.exit_code == DataError.exit_code and "the sweep stopped there" in str(stop)
    assert final_error(Jobs(2, 0, None), tmp_path / "none") is None


def test_a_sweep_whose_every_job_would_fail_stops_at_the_first(tmp_path):
    # A real process: the sweep's stop is process state that later jobs in this one would see.
    # The sweep folder exists beforehand, so the refused sweep keeps it (and its job records).
    (tmp_path / "sweep").mkdir()
    proc = _cli(tmp_path, "-m", "dataset=textfile", "dataset.path=/no/such/file.txt",
                "cell=rnn,gru", "train.steps=2", "mlflow.enabled=false",
                f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rnnlab:")]
    assert errors == ["rnnlab: error: dataset file /no/such/file.txt does not exist; fix "
                      "dataset.path (the sweep's first job failed, and every job would fail "
                      "the same way: the sweep stopped there)"], proc.stderr
    assert "Traceback" not in proc.stderr
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob(JOB_FILE))]
    assert [(r["num"], r["failed"], r["skipped"]) for r in records] == [(0, True, False),
                                                                       (1, False, True)]


@pytest.mark.slow
def test_a_sweep_with_a_failed_job_exits_non_zero_with_the_count(tmp_path):
    names = _names(tmp_path)
    # The bad value is the second job's: a grid refuses a first job's bad config before it starts.
    proc = _cli(tmp_path, "-m", "dataset=textfile", f"dataset.path={names}",
                "dataset.mode=lines", "cell=rnn", "cell.hidden_size=4,0", "train.steps=2",
                "train.batch_size=2", "mlflow.enabled=false")
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rnnlab: error: 1 of 2 jobs of the sweep failed (first: cell 'rnn': "
                           "cell.hidden_size must be > 0"), proc.stderr
    assert "done: 2 steps" in proc.stdout  # the other job trained


# ------------------------------------------------------------------------------ Optuna
def _runs_in(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:  # no tables yet
            return 0


def test_an_optuna_direction_mismatch_creates_nothing(tmp_path):
    proc = run_cli("framework", ["-m", "hparams_search=optuna", "hydra.sweeper.direction=maximize",
                                 f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                   tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rnnlab: error: optuna.objective=val_loss of task=lm is better lower, but "
        "hydra.sweeper.direction=maximize; set hydra.sweeper.direction=minimize"]
    assert _runs_in(tmp_path / "mlflow.db") == 0 and not (tmp_path / "optuna.db").exists()


def _study_with_lr_trial(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="rnnlab", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    study.add_trial(optuna.trial.create_trial(
        params={"optimizer.lr": 0.01}, value=1.0,
        distributions={"optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 0.1,
                                                                               log=True)}))


def test_a_search_space_the_stored_study_cannot_take_is_one_line(tmp_path):
    _study_with_lr_trial(tmp_path)
    proc = run_cli("framework", ["-m", "hparams_search=optuna", "hydra.sweeper.params=null",
                                 "optimizer.lr=choice(0.1,0.2)",
                                 f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                   tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "rnnlab: error: optimizer.lr: Optuna study 'rnnlab' searched it as log interval(0.0001, "
        "0.1), this sweep as choice(0.1, 0.2); search it as before, or start a new study with "
        "hydra.sweeper.study_name=<new name>"]
    assert _runs_in(tmp_path / "mlflow.db") == 0


def test_a_study_remembers_its_settings_and_refuses_others():
    from framework.sweeps.optuna_study_check import (
        check_settings,
        fixed_settings,
        record_settings,
    )
    from tests.helpers import compose_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    first = fixed_settings(compose_config(["train.steps=300"]), ["optimizer.lr"])
    assert "train.steps" in first and "optimizer.lr" not in first
    assert not any(k.startswith(("mlflow.", "optuna.")) for k in first)
    check_settings(study, first, allow_changed=False)  # a study without settings takes any
    record_settings(study, first)
    check_settings(study, first, allow_changed=False)
    later = fixed_settings(compose_config(["train.steps=500", "cell=gru"]), ["optimizer.lr"])
    with pytest.raises(ConfigError) as info:
        check_settings(study, later, allow_changed=False)
    message = str(info.value)
    assert "\n" not in message
    assert "cell.name=lstm -> gru" in message and "train.steps=300 -> 500" in message
    assert message.endswith("start a new study with hydra.sweeper.study_name=<new name>, or "
                            "continue this one anyway with hydra.sweeper.allow_changed_settings"
                            "=true")
    check_settings(study, later, allow_changed=True)
    record_settings(study, later)  # the first sweep's settings stay the study's
    assert study.user_attrs["rnnlab.settings"] == first


@pytest.mark.slow
def test_continuing_a_study_with_other_settings_is_refused(tmp_path):
    base = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "train.eval_every=2",
            "cell.hidden_size=8", "train.batch_size=8", "train.sample_every=0",
            "train.checkpoint_every=0", "mlflow.log_model=false",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    assert _cli(tmp_path, *base, "train.steps=4").returncode == 0
    runs = _runs_in(tmp_path / "mlflow.db")
    proc = _cli(tmp_path, *base, "train.steps=6")
    assert proc.returncode == 2
    assert "was run with other settings (train.steps=4 -> 6)" in proc.stderr
    assert _runs_in(tmp_path / "mlflow.db") == runs  # no parent run for the refused sweep
    again = _cli(tmp_path, *base, "train.steps=6", "hydra.sweeper.allow_changed_settings=true")
    assert again.returncode == 0, again.stderr
    assert len(optuna.load_study(study_name="rnnlab",
                                 storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials) == 2


def test_the_sweep_progress_line_counts_done_failed_running_and_left(tmp_path):
    from framework.sweeps.outcome import progress_line

    _job_dir(tmp_path, 0, {"status": "COMPLETED", "return_value": 1.5, "failed": False})
    _job_dir(tmp_path, 1, {"status": "COMPLETED", "return_value": None, "failed": True})
    _job_dir(tmp_path, 2, None)  # started, no record yet: running
    assert progress_line(tmp_path, 6) == "sweep: 2 of 6 jobs done (1 failed), 1 running, 3 left"
    assert progress_line(tmp_path, None) == "sweep: 2 jobs done (1 failed), 1 running"
