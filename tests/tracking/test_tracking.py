"""MLflow tracking through the explicit client: runs, batching, failures, sqlite races."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from framework.errors import CheckpointError, TrackingError
from framework.tracking.params import flatten_config
from framework.tracking.plots import loss_curve_figure, save_loss_curve
from framework.tracking.protocol import NullTracker
from framework.tracking.tracker import MlflowTracker, download_checkpoint
from framework.training.checkpoint import save_checkpoint
from tests.helpers import sqlite_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # One store for the module, copied from the session's (creating a schema costs a second).
    return sqlite_store(tmp_path_factory.mktemp('store') / 'mlflow.db')


@pytest.fixture
def uri(store, tmp_path, monkeypatch):
    # Run from an empty directory so we can check nothing (mlruns/, mlflow.db) lands in the cwd.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_flatten_config():
    flat = flatten_config({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": "x", "g": {}})
    assert flat == {"a.b": "1", "a.c.d": "None", "e": "[1, 2]", "f": "x", "g": "{}"}


def test_disabled_gives_null_tracker(tmp_path):
    tracker = MlflowTracker.from_config({"enabled": False, "tracking_uri": "http://nowhere:1"})
    assert isinstance(tracker, NullTracker) and not isinstance(tracker, MlflowTracker)
    tracker.check_reachable()
    assert tracker.start({"a": 1}, {}) is None
    tracker.log_metrics({"loss": 1.0}, 0)
    tracker.log_text("x", "x.txt")
    tracker.log_model(str(tmp_path / "nope.npz"))
    tracker.end("FAILED", "why")
    assert list(tmp_path.iterdir()) == []


def test_run_params_tags_metrics_and_end(uri, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    tracker = MlflowTracker.from_config({"tracking_uri": uri, "experiment_name": "exp",
                                   "run_name": "r1", "enabled": True, "log_model": False})
    tracker.flush_every_seconds = 3600  # only the size trigger and end() flush in this test
    tracker.flush_every_metrics = 50  # (default 500; smaller keeps the sqlite test quick)
    tracker.check_reachable()
    params = flatten_config({"cell": {"name": "gru", "hidden_size": 8},
                             "dataset": {"name": "dinos"}, "long": "x" * 7000})
    run_id = tracker.start(params, {"optimizer": "adam"})
    calls = []
    real = tracker.client.log_batch
    monkeypatch.setattr(tracker.client, "log_batch",
                        lambda *a, **k: (k.get("metrics") and calls.append(len(k["metrics"])),
                                         real(*a, **k)))
    for step in range(30):
        tracker.log_metrics({"train_loss": 3.0 - step / 1000, "grad_norm": 1.0}, step)
    assert calls == [50]  # 60 values: one size-triggered batch, the rest stays buffered
    tracker.end("FAILED", "diverged at step 7")
    assert calls == [50, 10]

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    tags = run.data.tags
    assert tags["mlflow.runName"] == "r1" and tags["cell"] == "gru" and tags["dataset"] == "dinos"
    assert tags["optimizer"] == "adam" and tags["rnnlab.failure_reason"] == "diverged at step 7"
    assert run.data.params["cell.hidden_size"] == "8"
    assert len(run.data.params["long"]) <= 6000
    assert len(client.get_metric_history(run_id, "train_loss")) == 30
    assert client.get_experiment(run.info.experiment_id).name == "exp"
    assert list(Path.cwd().iterdir()) == []  # artifacts live beside the db, not in ./mlruns
    tracker.end()  # a second end is harmless


def test_time_triggered_flush(uri, monkeypatch):
    tracker = MlflowTracker(uri, "exp", flush_every_seconds=0.0)
    run_id = tracker.start({}, {})
    tracker.log_metrics({"a": 1.0}, 0)
    assert not tracker._buffer
    from mlflow import MlflowClient

    assert MlflowClient(uri).get_run(run_id).data.metrics["a"] == 1.0
    tracker.end()


def test_flush_failure_keeps_metrics_and_warns(uri, monkeypatch, caplog):
    tracker = MlflowTracker(uri, "exp", flush_every_seconds=0.0)
    run_id = tracker.start({}, {})
    real = tracker.client.log_batch

    def down(*a, **k):
        raise ConnectionError("server down")

    monkeypatch.setattr(tracker.client, "log_batch", down)
    with caplog.at_level(logging.WARNING, logger="rnnlab.tracking"):
        tracker.log_metrics({"loss": 2.0}, 1)
        tracker.log_metrics({"loss": 1.5}, 2)  # within the back-off: buffered, no new attempt
    assert len(tracker._buffer) == 2
    assert "keeping 1 metric values" in caplog.text
    monkeypatch.setattr(tracker.client, "log_batch", real)
    tracker.end()
    from mlflow import MlflowClient

    history = MlflowClient(uri).get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5)]


@pytest.mark.parametrize("bad", ["sqlite:/relative-missing-slashes", "foo://bar", "./mlruns"])
def test_malformed_uri_is_one_line_error(bad):
    with pytest.raises(TrackingError) as info:
        MlflowTracker(bad, "exp").check_reachable()
    assert "\n" not in str(info.value)


def test_unreachable_server_fails_fast():
    tracker = MlflowTracker(f"http://127.0.0.1:{_free_port()}", "exp")
    t0 = time.monotonic()
    with pytest.raises(TrackingError, match="not reachable") as info:
        tracker.check_reachable()
    assert time.monotonic() - t0 < 10
    assert "\n" not in str(info.value)
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ or True  # restored by the probe


def test_artifacts_figure_and_checkpoint_download(uri, tmp_path):
    tracker = MlflowTracker(uri, "exp", parent_run_id=None)
    parent = tracker.start({}, {})
    child = MlflowTracker(uri, "exp", parent_run_id=parent)
    run_id = child.start({}, {})
    ckpt = save_checkpoint(tmp_path / "latest.npz", {"param/x": np.arange(3.0)},
                           {"format_version": 1, "step": 5})
    child.log_checkpoint(str(ckpt))
    child.log_text("hello", "samples.txt")
    child.log_dict({"a": 1}, "d.json")
    history = {"train_loss": [(0, 3.3), (10, 2.9)], "smooth_loss": [(0, 3.3), (10, 3.1)],
               "val_loss": [(10, float("nan")), (20, 3.0)]}
    child.log_figure(loss_curve_figure(history), "loss_curve.png")
    png = save_loss_curve(history, tmp_path / "plots" / "loss.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    child.log_artifact(str(png), "plots")
    child.end()
    tracker.end()

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent
    names = {f.path for f in client.list_artifacts(run_id)}
    assert {"checkpoints", "samples.txt", "d.json", "loss_curve.png", "plots"} <= names
    local = download_checkpoint(client, run_id, dst_dir=tmp_path / "dl")
    assert local.name == "latest.npz" and local.is_file()
    with pytest.raises(CheckpointError, match="not found"):
        download_checkpoint(client, "0" * 32)
    with pytest.raises(CheckpointError, match="no checkpoint artifact"):
        download_checkpoint(client, parent)


_PARALLEL = textwrap.dedent(
    """
    import sys
    from framework.tracking.tracker import MlflowTracker
    t = MlflowTracker(sys.argv[1], "sweep")
    t.start({"job": sys.argv[2]}, {})
    t.log_metrics({"loss": 1.0}, 0)
    t.end()
    """
)


# Slow stage: three processes importing MLflow. The default suite keeps the same race covered by
# tests/sweeps/test_sweep.py's joblib grid (parallel jobs on a fresh store, nothing in Default).
@pytest.mark.slow
def test_parallel_jobs_on_fresh_sqlite_store(tmp_path):
    """Concurrent first use of a fresh store: no schema race, no runs misfiled into Default."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _PARALLEL, uri, str(i)], env=env,
                              cwd=tmp_path, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sweep")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["job"] for r in runs) == ["0", "1", "2"]
    assert client.search_runs(["0"]) == []
    assert not (tmp_path / "mlruns").exists()


def _model_files(model_dir: Path) -> dict[str, str]:
    """Relative path -> content of the text files of a saved model (binary files: their size)."""
    out = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = str(path.relative_to(model_dir))
        try:
            out[rel] = path.read_text()
        except UnicodeDecodeError:
            out[rel] = f"<{path.stat().st_size} bytes>"
    return out


def test_model_saved_without_the_requirements_rescan_is_the_same_model(tmp_path, monkeypatch):
    """Skipping MLflow's scan of installed packages (the slowest part of saving the model) drops
    nothing: same files, same pins (the installed versions), same MLmodel; the check is restored.
    """
    import contextlib
    from importlib.metadata import version

    import mlflow.utils.environment as environment

    from framework.tracking import pyfunc
    from tests.tracking.test_pyfunc import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "latest.npz")
    calls = []
    real_check = environment.warn_dependency_requirement_mismatches

    def spy(requirements):
        calls.append(list(requirements))
        return real_check(requirements)

    monkeypatch.setattr(environment, "warn_dependency_requirement_mismatches", spy)
    fast = _model_files(pyfunc.save_pyfunc_model(tmp_path / "fast", ckpt))
    assert calls == [] and environment.warn_dependency_requirement_mismatches is spy
    monkeypatch.setattr(pyfunc, "_pins_not_rechecked", contextlib.nullcontext)
    checked = _model_files(pyfunc.save_pyfunc_model(tmp_path / "checked", ckpt))
    assert len(calls) == 1  # MLflow's own path, for comparison

    def stable(files):  # MLmodel holds the save time and a fresh model uuid
        return {k: "\n".join(line for line in v.splitlines()
                             if not line.startswith(("utc_time_created:", "model_uuid:")))
                for k, v in files.items()}

    assert stable(fast) == stable(checked)
    pins = set(fast["requirements.txt"].split())
    assert {f"{n}=={version(n)}" for n in ("mlflow", "numpy", "pandas", "omegaconf")} <= pins
    assert {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt",
            "artifacts/latest.npz", "code/framework/tracking/pyfunc_model.py"} <= set(fast)
    assert any(k.startswith("code/cells/") for k in fast)
    assert "signature:" in fast["MLmodel"] and "rnnlab_cell: gru" in fast["MLmodel"]
