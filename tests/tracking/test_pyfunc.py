"""Checkpoint -> model rebuild, the pyfunc model (models from code), serving, generate CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.data.vocab import Vocab
from framework.errors import CheckpointError, TrackingError
from framework.nn.models.language_model import CharRNN
from framework.training.checkpoint import (
    build_meta,
    build_model_from_checkpoint,
    load_checkpoint,
    pack_arrays,
    save_checkpoint,
)
from tests.helpers import sqlite_store

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NAMES_VOCAB = Vocab.from_text("abcdefghijklmnopqrstuvwxyz", eos="\n")


def make_checkpoint(path: Path, *, cell: str = "gru", vocab: Vocab = NAMES_VOCAB,
                    hidden_size: int = 8, num_layers: int = 2, window: int | None = None) -> Path:
    """A small model with random parameters, saved the way the trainer saves one."""
    model = CharRNN(cell, vocab.size, hidden_size, num_layers=num_layers)
    model.init_params(np.random.default_rng(0))
    meta = build_meta(cell=cell, hidden_size=hidden_size, num_layers=num_layers, dropout=0.0,
                      init="xavier", dtype="float32", cell_options={}, vocab_json=vocab.to_json(),
                      step=10, dataset="dinos", optimizer="adam",
                      config={"sampler": {"name": "categorical", "course_seed": 3},
                              "train": {"sample_length": 30}},
                      window=window)
    return save_checkpoint(path, pack_arrays(model.params), meta)


def test_build_model_from_checkpoint_round_trip(tmp_path):
    path = make_checkpoint(tmp_path / "c.npz", cell="lstm")
    arrays, meta = load_checkpoint(path)
    model, vocab = build_model_from_checkpoint(arrays, meta)
    assert vocab == NAMES_VOCAB and model.num_layers == 2
    for k, v in arrays.items():
        assert np.array_equal(model.params[k[len("param/"):]], v)
    logits, _ = model.step(np.array([-1]), model.zero_state(1))
    assert logits.shape == (1, vocab.size)


def test_build_model_refuses_mismatched_params(tmp_path):
    arrays, meta = load_checkpoint(make_checkpoint(tmp_path / "c.npz"))
    meta["model"]["hidden_size"] = 16
    with pytest.raises(CheckpointError, match="shape"):
        build_model_from_checkpoint(arrays, meta)
    meta["model"]["hidden_size"] = 8
    del arrays["param/out.b"]
    with pytest.raises(CheckpointError, match="missing"):
        build_model_from_checkpoint(arrays, meta)
    meta["cell"] = "nosuchcell"
    with pytest.raises(CheckpointError, match="nosuchcell"):
        build_model_from_checkpoint(arrays, meta)


def test_served_model_loads_through_the_same_checked_path(tmp_path):
    """The pyfunc model resolves and validates checkpoints like resume and generate do."""
    import zipfile

    from framework.tracking.pyfunc import load_text_model

    run = tmp_path / "run"
    path = make_checkpoint(run / "checkpoints" / "latest.npz", window=7)
    served = load_text_model(run)  # a run directory, like resume= and checkpoint=
    assert served.window == 7 and served.default_length == 30
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("param/extra.npy", b"x")
    with pytest.raises(CheckpointError, match=r"unexpected \['param/extra'\]"):
        load_text_model(path)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A run on a tmp sqlite store with a checkpoint artifact and a logged pyfunc model."""
    from framework.tracking.tracker import MlflowTracker

    tmp_path = tmp_path_factory.mktemp("logged-run")
    uri = sqlite_store(tmp_path / "mlflow.db")
    ckpt = make_checkpoint(tmp_path / "ckpt" / "latest.npz")
    tracker = MlflowTracker(uri, "pyfunc-test")
    run_id = tracker.start({"cell.name": "gru"}, {})
    tracker.log_checkpoint(str(ckpt))
    model_uri = tracker.log_model(str(ckpt))
    tracker.end()
    assert model_uri.startswith("models:/m-")
    return uri, run_id, ckpt


def _logged_model(uri: str, run_id: str):
    """The run's logged model (MLflow 3: the run's output, not a folder of its artifacts)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    (output,) = client.get_run(run_id).outputs.model_outputs
    return client.get_logged_model(output.model_id)


def test_pyfunc_log_load_predict(logged_run, monkeypatch, tmp_path):
    import pickle

    import mlflow.artifacts
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    uri, run_id, _ = logged_run

    def no_pickle(*a, **k):
        raise AssertionError("loading the model must not unpickle anything")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    # Download from the logged model's location (no process-global tracking URI); `runs:/` and
    # `models:/` resolution are exercised by the slow `mlflow models serve` test.
    logged = _logged_model(uri, run_id)
    assert logged.name == "model" and logged.source_run_id == run_id
    assert logged.status == "READY"
    local = mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location,
                                                dst_path=str(tmp_path))
    model = mlflow.pyfunc.load_model(local)
    frame = pd.DataFrame({"prompt": ["ab", ""], "num_samples": [2, 1], "seed": [1, 2],
                          "length": [12, 5]})
    out = model.predict(frame)
    assert isinstance(out, list) and len(out) == 3
    assert out[0].startswith("ab") and out[1].startswith("ab")
    assert all(set(t) <= set("abcdefghijklmnopqrstuvwxyz") for t in out)
    assert len(out[0]) <= 14 and len(out[2]) <= 5
    assert model.predict(frame) == out  # seeded rows are reproducible
    hot = model.predict(pd.DataFrame({"prompt": ["a"], "temperature": [5.0], "seed": [0]}))
    assert len(hot) == 1 and hot[0].startswith("a")
    with pytest.raises(MlflowException, match="not in the vocabulary"):
        model.predict(pd.DataFrame({"prompt": ["A!"]}))


@pytest.mark.slow  # ~15-30 s; the default suite keeps its 10-minute budget
def test_generate_cli_checkpoint_and_run_id(logged_run, tmp_path):
    uri, run_id, ckpt = logged_run
    work = tmp_path / "cli"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "framework.generate", *args], cwd=work,
                              env=env, capture_output=True, text=True, timeout=120)

    res = cli(f"checkpoint={ckpt}", "prompt=ab", "num_samples=3", "length=10", "seed=4",
              "sampler=top_k", "sampler.k=5")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("ab") for line in lines)
    res = cli(f"run_id={run_id}", f"mlflow.tracking_uri={uri}", "num_samples=2", "seed=4")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 2
    for args, message in [
        ((f"checkpoint={tmp_path / 'missing.npz'}",), "not found"),
        ((f"checkpoint={ckpt}", "prompt=XY"), "not in the vocabulary"),
        ((), "exactly one of"),
    ]:
        res = cli(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert sorted(p.name for p in work.iterdir()) == []  # no outputs/, .hydra/, logs, mlruns


def test_generate_unknown_run_id_or_store(logged_run, tmp_path):
    from omegaconf import OmegaConf

    from framework.cli.generate import load_for_generation

    uri, _, _ = logged_run
    cfg = OmegaConf.create({"checkpoint": None, "run_id": "f" * 32, "artifact": None,
                            "mlflow": {"tracking_uri": uri}})
    with pytest.raises(CheckpointError, match="not found"):
        load_for_generation(cfg)
    cfg.mlflow.tracking_uri = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(TrackingError, match="no MLflow store"):
        load_for_generation(cfg)
    assert not (tmp_path / "typo.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["models", "runs"])
def test_mlflow_models_serve_answers_with_text(logged_run, tmp_path, form):
    uri, run_id, _ = logged_run
    model_uri = (f"models:/{_logged_model(uri, run_id).model_id}" if form == "models"
                 else f"runs:/{run_id}/model")
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)  # the model carries its own copy of framework/ and cells/
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [str(VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri,
         "--env-manager", "local", "-p", str(port), "--host", "127.0.0.1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = json.dumps({"dataframe_records": [{"prompt": "ab", "num_samples": 2, "seed": 7,
                                                  "length": 15}]}).encode()
        deadline = time.monotonic() + 240  # generous: CI machines can be loaded
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as resp:
                    answer = json.loads(resp.read())
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert answer is not None, (tmp_path / "serve.log").read_text()[-3000:]
        texts = answer["predictions"]
        assert len(texts) == 2 and all(t.startswith("ab") for t in texts)
        bad = json.dumps({"dataframe_records": [{"prompt": "A!"}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=bad,
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 400
        # A very large batch is refused with the limit before any work (was: a 504 at 30 s).
        many = json.dumps({"dataframe_records": [{"prompt": "ab"}] * 200_000}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=many,
                                     headers={"Content-Type": "application/json"})
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=60)
        assert info.value.code == 400
        assert "a request may have at most 1000 rows, got 200000" in info.value.read().decode()
        assert time.monotonic() - started < 30
    finally:
        # The server runs in its own session; signal that process group by the pid we started.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
