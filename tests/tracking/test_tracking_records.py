"""What an MLflow run records for a reviewer: dataset input, description, logged model, params,
the UI view link, registration and system metrics."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from framework.data.files.fetch import locate, sha256_of
from tests.conftest import needs_data, require_data
from tests.helpers import compose_config, run_config, sqlite_store

# A tiny rnn run: rnn has no forget_bias, the constant schedule no lr_final, the names feed no
# stride. An lr with many digits shows the rounding.
TINY = ["cell=rnn", "dataset=dinos", "train.steps=4", "train.eval_every=2", "train.sample_every=0",
        "train.checkpoint_every=0", "cell.hidden_size=8", "train.batch_size=4",
        "optimizer.lr=0.0123456789", "train.progress=never"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The run, in this process (the command line's own path is covered by test_app.py)."""
    require_data("dinos.txt")
    from mlflow import MlflowClient

    from framework.cli.train import run

    cwd = tmp_path_factory.mktemp("records")
    uri = sqlite_store(cwd / "mlflow.db")
    cfg = compose_config([*TINY, f"mlflow.tracking_uri={uri}"])
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)  # outside Hydra the run directory is the working directory
    try:
        with contextlib.redirect_stdout(out):
            run(cfg)
    finally:
        os.chdir(old)
    client = MlflowClient(uri)
    (run_,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    return client, run_, out.getvalue()


@needs_data("dinos.txt")
def test_dataset_is_an_input_with_the_files_sha256(tiny_run):
    from framework.plugins import load_plugins
    from framework.registry import DATASETS

    client, run, _ = tiny_run
    load_plugins()
    source = DATASETS.get("dinos").source
    sha = sha256_of(locate(source))
    assert sha == source.sha256  # the pinned digest is what the file has
    (entry,) = run.inputs.dataset_inputs
    dataset = entry.dataset
    assert dataset.name == "dinos" and dataset.source_type == "http"
    assert json.loads(dataset.source) == {"url": source.url}
    assert dataset.digest == sha[:36]  # MLflow keeps at most 36 characters of a digest
    assert json.loads(dataset.profile)["sha256"] == sha
    tags = {t.key: t.value for t in entry.tags}
    assert tags == {"mlflow.data.context": "training", "rnnlab.sha256": sha}
    assert run.data.tags["rnnlab.dataset_sha256"] == sha


@needs_data("dinos.txt")
def test_description_says_what_was_trained_on_what(tiny_run):
    _, run, _ = tiny_run
    assert run.data.tags["mlflow.note.content"] == (
        "RNN (1x8) language model on dinos, 4 steps, adam lr 0.0123457, seed 0")


@needs_data("dinos.txt")
def test_model_is_a_logged_model_with_signature_and_input_example(tiny_run, tmp_path):
    import mlflow.artifacts
    import yaml

    client, run, _ = tiny_run
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.name == "model" and model.source_run_id == run.info.run_id
    assert model.status == "READY"
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    assert model.params["cell.name"] == "rnn"  # the run's params, shown in "Logged models"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location,
                                                     dst_path=str(tmp_path)))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["model_id"] == model.model_id and mlmodel["run_id"] == run.info.run_id
    columns = [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])]
    assert columns == ["prompt", "num_samples", "length", "temperature", "seed", "decoder", "width",
                       "length_penalty", "score"]
    serving = json.loads((local / "serving_input_example.json").read_text())
    assert serving["dataframe_split"]["columns"] == ["prompt", "num_samples", "length", "seed"]
    # Models from code: no pickled python_model anywhere in the model.
    assert mlmodel["flavors"]["python_function"]["loader_module"].endswith("code_model")
    assert not list(local.rglob("*.pkl")) and not list(local.rglob("python_model*"))


@needs_data("dinos.txt")
def test_params_are_the_runs_resolved_options_rounded(tiny_run):
    _, run, _ = tiny_run
    params = run.data.params
    assert not [k for k in params if k.startswith(("mlflow.", "optuna.", "hydra."))], params
    for absent in ("cell.forget_bias", "train.lr_final", "train.stride", "train.shuffle_seed",
                   "resume"):
        assert absent not in params
    assert params["cell.name"] == "rnn" and params["cell.hidden_size"] == "8"
    assert params["optimizer.lr"] == "0.0123457" and params["optimizer.eps"] == "1e-08"
    assert params["train.steps"] == "4" and params["seed"] == "0"
    assert params["train.warmup_steps"] == "0"  # the constant schedule's own option


@needs_data("dinos.txt")
def test_run_prints_a_link_to_a_view_with_metric_and_option_columns(tiny_run):
    client, run, stdout = tiny_run
    (line,) = [x for x in stdout.splitlines() if "viewStateShareKey" in x]
    exp = run.info.experiment_id
    assert re.search(rf"http://127\.0\.0\.1:5000/#/experiments/{exp}/runs\?workflowType="
                     rf"machine_learning&viewStateShareKey=rnnlab-lm$", line), line
    lines = stdout.splitlines()
    assert lines.index(line) == len(lines) - 1 and lines[-2].startswith("done:")
    state = json.loads(client.get_experiment(exp).tags["mlflow.sharedViewState.rnnlab-lm"])
    for column in ("metrics.`val_loss`", "metrics.`val_bits_per_char`", "params.`cell.name`",
                   "params.`optimizer.lr`"):
        assert column in state["selectedColumns"]
    assert state["searchFilter"] == "tags.task = 'lm'"


def test_params_of_other_tasks_and_plugins():
    from framework.tracking.run_info import describe, run_params

    rc = run_config(["task=forecast", "dataset=sunspots", "cell=gru", "train.lr_schedule=cosine",
                     "hparams_search=optuna"])
    params = run_params(rc)
    assert params["task.window"] == 9 and params["train.lr_final"] == 0.1
    assert not [k for k in params if k.startswith(("mlflow.", "optuna."))]
    assert describe(rc).startswith("GRU (1x128) forecaster on sunspots (window 9, horizon 1)")
    rc = run_config(["task=classify", "dataset=names", "cell=lstm", "model.bidirectional=true"])
    assert "cell.forget_bias" in run_params(rc)
    assert describe(rc).startswith("LSTM (1x128, bidirectional) classifier on names")


def test_param_values_round_floats_only():
    from framework.tracking.params import flatten_config

    flat = flatten_config({"a": 0.016942852273718636, "b": 3, "c": "x", "d": 1e-08, "e": 5.0,
                           "f": None, "g": True, "h": 12345678.9})
    assert flat == {"a": "0.0169429", "b": "3", "c": "x", "d": "1e-08", "e": "5.0",
                    "f": "None", "g": "True", "h": "12345700.0"}


def _checkpoint(tmp_path: Path) -> Path:
    from tests.tracking.test_pyfunc import make_checkpoint

    return make_checkpoint(tmp_path / "ckpt" / "latest.npz")


def test_register_model_adds_a_version_of_the_logged_model(tmp_path):
    from framework.tracking.tracker import MlflowTracker

    uri = sqlite_store(tmp_path / "mlflow.db")
    ckpt = _checkpoint(tmp_path)
    versions = []
    for _ in range(2):
        tracker = MlflowTracker(uri, "reg", register_model="dino-namer")
        tracker.start({"cell.name": "gru"}, {})
        model_uri = tracker.log_model(str(ckpt))
        tracker.end()
        versions.append((tracker.model_version, model_uri))
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    assert [v for v, _ in versions] == [1, 2]
    mv = client.get_model_version("dino-namer", "2")
    assert mv.source == versions[1][1]  # models:/<model_id> of the run's logged model
    assert mv.run_id == tracker.run_id


def test_register_model_needs_log_model():
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match="register_model needs mlflow.log_model=true"):
        run_config(["mlflow.register_model=x", "mlflow.log_model=false"])
    rc = run_config([])
    assert rc.mlflow.register_model is None and rc.mlflow.system_metrics is False


def test_system_metrics_are_sampled_when_asked(tmp_path, monkeypatch):
    import time

    from framework.tracking.tracker import MlflowTracker

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri = sqlite_store(tmp_path / "mlflow.db")
    tracker = MlflowTracker(uri, "sys", system_metrics=True)
    tracker.start({}, {})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if any(k.startswith("system/") for k in tracker.client.get_run(tracker.run_id)
               .data.metrics):
            break
        time.sleep(0.2)
    tracker.end()
    metrics = tracker.client.get_run(tracker.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics, metrics
    assert tracker._monitor is None  # stopped with the run
