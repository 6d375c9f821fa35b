"""Sweeps: one MLflow parent run per ``-m`` sweep, jobs nested as children, launched in parallel.

The stores here are fresh sqlite files, the case where parallel jobs used to race on the schema
and misfile runs into "Default". Jobs are tiny (5 steps, 16 units, no model logging).
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from framework.sweeps.nested_runs import HANDOFF_FILE, PLOT_FILE, job_label
from tests.conftest import needs_data
from tests.helpers import run_cli, sqlite_store

TINY = ["train.steps=5", "cell.hidden_size=16", "train.batch_size=8", "train.eval_every=0",
        "train.sample_every=0", "train.checkpoint_every=0", "mlflow.log_model=false",
        "hydra.job_logging.root.level=WARNING"]


def sweep(cwd: Path, args: list[str], env: dict | None = None, status: int = 0):
    """``python -m framework -m ...`` run in this process (the launcher starts its own workers)."""
    uri = f"sqlite:///{cwd / 'mlflow.db'}"
    proc = run_cli("framework", ["-m", *TINY, f"mlflow.tracking_uri={uri}", *args], cwd, env=env)
    assert proc.returncode == status, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def client_for(cwd: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")


def parent_and_children(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("rnnlab.sweep") == "true"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    for child in children:
        assert child.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    return parent, children


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A 3 x 2 grid with the joblib launcher on a fresh store, MLFLOW_RUN_ID set to a stale id."""
    cwd = tmp_path_factory.mktemp("grid")
    proc = sweep(cwd, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       "cell=rnn,lstm,gru", "optimizer.lr=0.01,0.003",
                       "mlflow.experiment_name=grid"],
                 env={"MLFLOW_RUN_ID": "0123456789abcdef0123456789abcdef"})
    return cwd, proc


# The joblib grid is an end-to-end parallel sweep (six jobs in two worker processes, ~10-25 s):
# the slow stage runs it; the default suite keeps the basic launcher's sweep below.
@pytest.mark.slow
@needs_data("dinos.txt")
def test_joblib_grid_on_fresh_store_nests_six_finished_children(grid):
    cwd, proc = grid
    assert "Joblib.Parallel" in proc.stdout + proc.stderr  # really the parallel launcher
    client = client_for(cwd)
    parent, children = parent_and_children(client, "grid")
    assert parent.info.status == "FINISHED"
    assert len(children) == 6 and {c.info.status for c in children} == {"FINISHED"}
    combos = {(c.data.params["cell.name"], c.data.params["optimizer.lr"]) for c in children}
    assert combos == set(itertools.product(["rnn", "lstm", "gru"], ["0.01", "0.003"]))
    names = sorted(c.info.run_name for c in children)
    assert names[0] == "#0 cell=rnn optimizer.lr=0.01", names
    # Nothing misfiled into Default, nothing logged into the stale MLFLOW_RUN_ID.
    with sqlite3.connect(cwd / "mlflow.db") as db:
        by_exp = dict(db.execute("select e.name, count(*) from runs r join experiments e "
                                 "on r.experiment_id = e.experiment_id group by e.name"))
    assert by_exp == {"grid": 7}, by_exp


@needs_data("dinos.txt")
@pytest.mark.slow
def test_parent_holds_summary_table_plot_and_best(grid):
    cwd, _ = grid
    client = client_for(cwd)
    parent, children = parent_and_children(client, "grid")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep_summary.md", "sweep_summary.csv", PLOT_FILE} <= artifacts, artifacts
    md = Path(client.download_artifacts(parent.info.run_id, "sweep_summary.md")).read_text()
    for child in children:
        assert child.info.run_name in md
    assert "cell.name" in md and "optimizer.lr" in md and "val_loss" in md
    csv_lines = Path(client.download_artifacts(parent.info.run_id,
                                               "sweep_summary.csv")).read_text().splitlines()
    assert len(csv_lines) == 7 and csv_lines[0].startswith("rank,run,run_id,status")
    best = min(children, key=lambda c: c.data.metrics["val_loss"])
    assert parent.data.metrics["best_val_loss"] == pytest.approx(best.data.metrics["val_loss"])
    assert parent.data.tags["rnnlab.best_run_id"] == best.info.run_id
    assert csv_lines[1].split(",")[2] == best.info.run_id  # ranked by val loss
    assert parent.data.metrics["sweep_failed"] == 0 and parent.data.metrics["sweep_jobs"] == 6
    sweep_dirs = list(cwd.glob(f"multirun/*/*/{HANDOFF_FILE}"))
    assert len(sweep_dirs) == 1 and parent.info.run_id in sweep_dirs[0].read_text()


@pytest.mark.slow
@needs_data("dinos.txt")
def test_submitit_local_sweep_ignores_mlflow_run_id(grid):
    """Two jobs through submitit's local executor; an existing run in MLFLOW_RUN_ID is untouched."""
    cwd, _ = grid
    client = client_for(cwd)
    decoy_exp = client.create_experiment("decoy")
    decoy = client.create_run(decoy_exp).info.run_id
    sweep(cwd, ["hydra/launcher=submitit_local", "cell=rnn,lstm", "mlflow.experiment_name=sub"],
          env={"MLFLOW_RUN_ID": decoy})
    parent, children = parent_and_children(client, "sub")
    assert parent.info.status == "FINISHED" and parent.info.run_id != decoy
    assert sorted(c.data.params["cell.name"] for c in children) == ["lstm", "rnn"]
    assert {c.info.status for c in children} == {"FINISHED"}
    untouched = client.get_run(decoy)
    assert not untouched.data.params and not untouched.data.metrics
    assert untouched.info.status == "RUNNING"
    assert list(cwd.glob("multirun/*/*/.submitit/*/*_result.pkl"))


@needs_data("dinos.txt")
def test_failed_job_fails_the_parent(tmp_path):
    """A job stopped by a one-line config error (it never reaches MLflow) fails the parent."""
    cwd = tmp_path
    sqlite_store(cwd / "mlflow.db")
    proc = sweep(cwd, ["cell=rnn", "optimizer.lr=0.01,-1", "mlflow.experiment_name=bad"],
                 status=1)  # a sweep with a failed job is a failed command
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "rnnlab: error: 1 of 2 jobs of the sweep failed (first: optimizer 'adam': ")
    parent, children = parent_and_children(client_for(cwd), "bad")
    assert [c.info.status for c in children] == ["FINISHED"]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["rnnlab.failure_reason"] == "1 of 2 jobs failed"


def test_child_run_names_show_swept_values_only():
    overrides = ["cell=gru", "optimizer.lr=0.016942852273718636", "train.steps=5"]
    assert job_label(overrides, ["cell", "optimizer.lr"], 3) == "#3 cell=gru optimizer.lr=0.01694"
    assert job_label(overrides, [], 0) == "#0"


def test_hparams_search_group_is_in_help(tmp_path):
    proc = run_cli("framework", ["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("hparams_search:"))
    assert "optuna" in line.split(":", 1)[1].replace(",", " ").split()
