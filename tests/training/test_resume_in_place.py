"""``resume=`` continues the same MLflow run: one run, back to RUNNING then FINISHED, its metric
histories going on at their steps; a run gone from the store gets a new run, and the job says
why."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import needs_data
from tests.helpers import cli, run_cli, sqlite_store

RUN = ["cell=rnn", "dataset=dinos", "cell.hidden_size=8", "train.batch_size=8",
       "train.log_every=1", "train.eval_every=2", "train.sample_every=0",
       "train.checkpoint_every=2", "mlflow.log_model=false"]


def _train(tmp_path: Path, *args: str, process: bool = False):
    """A job on the store ``tmp_path/mlflow.db``, in this process unless ``process``: a real
    process logs through its helper process."""
    db = tmp_path / "mlflow.db"
    if not db.exists():
        sqlite_store(db)
    run = cli if process else run_cli
    proc = run("framework", [*RUN, f"mlflow.tracking_uri=sqlite:///{db}", *args], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _client(tmp_path: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


@needs_data("dinos.txt")
def test_a_resumed_job_continues_its_run(tmp_path):
    _train(tmp_path, "train.steps=4", "hydra.run.dir=first")
    checkpoint = tmp_path / "first" / "checkpoints" / "latest.npz"
    proc = _train(tmp_path, "train.steps=8", f"resume={checkpoint}", "hydra.run.dir=second",
                  process=True)
    client = _client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    assert f"MLflow run {run.info.run_id} continued" in proc.stdout
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    # the history goes on at its steps: every step of both jobs, none twice
    assert sorted(steps) == list(range(8))  # steps 0-3, then 4-7
    # a second resume, from the second folder, still finds the run
    third = _train(tmp_path, "train.steps=10", f"resume={tmp_path / 'second' / 'checkpoints'}",
                   "hydra.run.dir=third")
    assert f"MLflow run {run.info.run_id} continued" in third.stdout


@needs_data("dinos.txt")
def test_a_checkpoint_whose_run_is_gone_starts_a_new_run_and_says_why(tmp_path):
    _train(tmp_path, "train.steps=2", "hydra.run.dir=first")
    client = _client(tmp_path)
    (old,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    client.delete_run(old.info.run_id)
    proc = _train(tmp_path, "train.steps=4", f"resume={tmp_path / 'first' / 'checkpoints'}",
                  "hydra.run.dir=second")
    assert (f"MLflow run {old.info.run_id} of the resumed checkpoint is gone from the store"
            in proc.stdout + proc.stderr)
    (new,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert new.info.run_id != old.info.run_id and new.info.status == "FINISHED"
