"""The command-line app end to end: training, MLflow logging, generation, errors, help."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from framework.registry import CELLS, FEEDS, REGISTRIES, SCHEDULES
from framework.training.checkpoint import load_checkpoint
from tests.conftest import needs_data
from tests.helpers import QUICK, cli, run_cli

MAIN_JOB = ["cell=lstm", "dataset=dinos", "train.steps=30", "train.eval_every=10",
            "train.sample_every=10", "train.checkpoint_every=10", "cell.hidden_size=16",
            "train.num_samples=3"]


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    """One real run of the main job (shortened) on a fresh embedded MLflow store."""
    cwd = tmp_path_factory.mktemp("main_job")
    proc = cli("framework", MAIN_JOB, cwd)  # a real process: its helper process logs the run
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


def _runs(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select run_uuid, status, experiment_id from runs").fetchall()


@needs_data("dinos.txt")
def test_main_job_leaves_a_finished_mlflow_run_with_everything(main_run):
    from mlflow.tracking import MlflowClient

    cwd, proc = main_run
    db = cwd / "mlflow.db"
    assert db.is_file(), "the embedded default store is sqlite:///mlflow.db in the launch dir"
    assert not (cwd / "mlruns").exists() or not any((cwd / "mlruns").iterdir())
    (run_id, status, _), = _runs(db)
    assert status == "FINISHED"
    client = MlflowClient(f"sqlite:///{db}")
    run = client.get_run(run_id)
    params = run.data.params
    assert params["cell.name"] == "lstm" and params["dataset.name"] == "dinos"
    assert params["train.steps"] == "30"
    for key in ("train_loss", "smooth_loss", "val_loss", "val_bits_per_char", "grad_norm",
                "chars_per_sec"):
        assert key in run.data.metrics, key
    history = client.get_metric_history(run_id, "train_loss")
    assert len(history) >= 3 and sorted(m.step for m in history) == [m.step for m in
                                                                      sorted(history,
                                                                             key=lambda m: m.step)]
    assert run.data.tags["cell"] == "lstm" and run.data.tags["dataset"] == "dinos"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "samples.txt", "loss_curve.png", "checkpoints",
            ".hydra"} <= artifacts, artifacts
    # The model is the run's MLflow 3 logged model (the UI's "Logged models"), not a folder.
    (output,) = run.outputs.model_outputs
    assert client.get_logged_model(output.model_id).name == "model"
    # Through the MLflow helper process too: the dataset input, the note and the view link.
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["dinos"]
    assert run.data.tags["mlflow.note.content"].startswith("LSTM (1x16) language model on dinos")
    assert "viewStateShareKey=rnnlab-lm" in proc.stdout.strip().splitlines()[-1]
    ckpts = {Path(a.path).name for a in client.list_artifacts(run_id, "checkpoints")}
    assert {"latest.npz", "best.npz"} <= ckpts
    samples = Path(client.download_artifacts(run_id, "samples.txt")).read_text()
    assert samples.strip()
    assert "MLflow run" in proc.stdout


@needs_data("dinos.txt")
def test_generate_prints_samples_from_the_run_checkpoint(main_run):
    cwd, _ = main_run
    latest = sorted(cwd.glob("outputs/*/*/checkpoints/latest.npz"))[-1]
    proc = run_cli("framework.generate", [f"checkpoint={latest}", "num_samples=4", "length=30"],
                   cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 4  # one name per line (an untrained model may emit "")
    assert proc.stdout.strip()
    arrays, meta = load_checkpoint(latest)
    assert meta["cell"] == "lstm" and meta["step"] == 30
    assert all(a.dtype != object for a in arrays.values())


@needs_data("dinos.txt")
def test_generate_from_run_id(main_run):
    cwd, _ = main_run
    (run_id, _, _), = _runs(cwd / "mlflow.db")
    proc = run_cli("framework.generate", [f"run_id={run_id}", "num_samples=2", "length=20"], cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 2


@pytest.mark.parametrize("args, message", [
    (["cell=lstmm"], "unknown cell 'lstmm'; did you mean 'lstm'? (available: "
                     + ", ".join(CELLS.names()) + ")"),
    (["dataset=dino"], "unknown dataset 'dino'; did you mean 'dinos'?"),
    (["clip=nrom"], "unknown clip 'nrom'; did you mean 'norm'?"),
    (["sampler=topk"], "unknown sampler 'topk'; did you mean 'top_k'?"),
    (["optimizer=adamw"], "unknown optimizer 'adamw'; did you mean 'adam'?"),
    (["-m", "cell=rnn,lstmm"], "unknown cell 'lstmm'"),
    (["experiment=dinosaurus"], "unknown experiment 'dinosaurus'"),
    (["cell.hidden_size=big"], "cell.hidden_size: Value 'big'"),
    (["cell.hidden_size=0"], "hidden_size"),
    (["optimizer.lr=-1"], "lr"),
    (["model.dropout=1.0"], "model.dropout must be in [0, 1)"),
    (["train.seq_len=0"], "train.seq_len must be >= 1"),
    (["train.batch_size=0"], "train.batch_size must be >= 1"),
    (["train.steps=-1"], "train.steps must be >= 0"),
])
def test_bad_input_is_one_line_error(tmp_path, args, message):
    proc = run_cli("framework", [*args, "mlflow.enabled=false"], tmp_path)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_help_lists_groups_options_and_experiments(tmp_path):
    proc = run_cli("framework", ["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for group, registry in REGISTRIES.items():  # the registries' names, nothing else
        assert f"{group}: {', '.join(registry.names())}\n" in text, text
    assert f"train.feed: {', '.join(FEEDS.names())}\n" in text
    assert f"train.lr_schedule: {', '.join(SCHEDULES.names())}\n" in text
    assert "experiment:" in text and "dinosaurus_island" in text


def test_cfg_job_prints_resolved_config(tmp_path):
    proc = run_cli("framework", ["--cfg", "job", "cell=gru", "cell.hidden_size=7"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: gru" in proc.stdout and "hidden_size: 7" in proc.stdout


@needs_data("tinyshakespeare.txt")
def test_quick_training_writes_checkpoint_json_meta(tmp_path):
    proc = run_cli("framework", [*QUICK, "cell=gru", "dataset=tinyshakespeare"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    latest = sorted(tmp_path.glob("outputs/*/*/checkpoints/latest.npz"))[-1]
    arrays, meta = load_checkpoint(latest)
    json.dumps(meta)  # metadata is plain JSON
    assert meta["step"] == 12 and meta["cell"] == "gru"
    assert any(k.startswith("param/") for k in arrays)
    assert all(np.isfinite(v).all() for k, v in arrays.items() if k.startswith("param/"))


@needs_data("dinos.txt")
def test_progress_bar_is_quiet_off_a_terminal_and_shows_when_asked(main_run, tmp_path):
    _, proc = main_run  # stderr is a pipe there: no bar
    assert "step/s" not in proc.stderr and "steps/s" not in proc.stderr
    forced = run_cli("framework", [*QUICK, "cell=rnn", "train.progress=always"], tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "step/s" in forced.stderr and "chars_s=" in forced.stderr and "loss=" in forced.stderr
