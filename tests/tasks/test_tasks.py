"""The classify and forecast tasks end to end: training, metrics, checkpoints, bit-identical
resume, ``framework.predict``, the pyfunc model, and one-line errors for combinations that do not
fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from framework.errors import ConfigError
from framework.training.checkpoint import load_checkpoint
from framework.training.trainer import Reporter, Trainer
from tests.conftest import require_run_data
from tests.helpers import run_cli, run_config

TINY = ["cell.hidden_size=8", "train.batch_size=8", "train.log_every=1", "train.sample_every=0",
        "mlflow.enabled=false", "train.num_samples=2"]
CLASSIFY = ["task=classify", "dataset=names", "cell=gru", *TINY]
FORECAST = ["task=forecast", "dataset=sunspots", "cell=lstm", "task.window=9", *TINY]


class Quiet:
    def log_metrics(self, values, step) -> None:
        self.last = values


def train(overrides: list[str], out, steps: int = 6) -> Trainer:
    require_run_data(overrides)
    trainer = Trainer(run_config([*overrides, f"train.steps={steps}",
                                  f"train.eval_every={steps}", f"train.checkpoint_every={steps}"]),
                      out_dir=out, reporter=Reporter(Quiet(), lambda _: None))
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return train(CLASSIFY, tmp_path_factory.mktemp("classify"))


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory):
    return train(FORECAST, tmp_path_factory.mktemp("forecast"), steps=20)


def test_classify_reports_accuracy_macro_f1_and_writes_a_confusion_matrix(classifier, tmp_path):
    metrics = classifier.last_metrics
    assert set(metrics) == {"val_loss", "val_accuracy", "val_macro_f1"}
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and math.isfinite(metrics["val_loss"])
    paths = classifier.task.final_artifacts(classifier, tmp_path)
    assert [p.name for p in paths] == ["confusion_matrix.png", "per_class.txt"]
    assert "Russian" in paths[1].read_text(encoding="utf-8")
    _, meta = load_checkpoint(classifier.last_checkpoint)
    assert meta["task"]["name"] == "classify" and "Japanese" in meta["task"]["classes"]


def test_forecast_reports_errors_in_original_units_beside_the_baselines(forecaster):
    metrics = forecaster.last_metrics
    assert {"val_rmse", "val_mae", "val_recursive_rmse", "val_loss"} <= set(metrics)
    baselines = forecaster.task.start_metrics(forecaster.corpus, forecaster.rc)
    assert baselines["baseline_persistence_rmse"] == pytest.approx(33.276, abs=1e-3)
    assert baselines["baseline_ar_rmse"] == pytest.approx(19.440, abs=1e-3)
    # Sunspot numbers are in the tens to hundreds: an error in standardised units would be < 3.
    assert metrics["val_rmse"] > 5


@pytest.mark.parametrize("extra", [CLASSIFY, [*CLASSIFY, "model.bidirectional=true"], FORECAST])
def test_resume_is_bit_identical(tmp_path, extra):
    full = train(extra, tmp_path / "full", steps=8)
    half = train([*extra], tmp_path / "half", steps=4)
    resumed = Trainer(run_config([*extra, "train.steps=8", "train.eval_every=8",
                                  "train.checkpoint_every=8"]),
                      out_dir=tmp_path / "resumed", reporter=Reporter(Quiet(), lambda _: None))
    resumed.restore(half.last_checkpoint)
    resumed.run()
    for key, value in full.model.params.items():
        np.testing.assert_array_equal(value, resumed.model.params[key], err_msg=key)


def test_predict_prints_the_top_classes(classifier, tmp_path):
    proc = run_cli("framework.predict", [f"checkpoint={classifier.last_checkpoint}",
                                     "text=[Nakamura,Schmidt]", "top_k=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["Nakamura", "Schmidt"]
    assert all(len(line.split(":")[1].split(",")) == 2 for line in lines)


def test_predict_forecasts_after_a_given_history(forecaster, tmp_path):
    history = "[" + ",".join(str(v) for v in [5, 11, 16, 23, 36, 58, 29, 20, 10]) + "]"
    proc = run_cli("framework.predict", [f"checkpoint={forecaster.last_checkpoint}",
                                     f"history={history}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    label, value = proc.stdout.strip().split(": ")
    assert label == "next value" and np.isfinite(float(value))
    short = run_cli("framework.predict", [f"checkpoint={forecaster.last_checkpoint}",
                                      "history=[1,2]"], tmp_path)
    assert short.returncode == 2 and "task.window=9" in short.stderr, short.stderr


def test_the_pyfunc_model_answers_per_task(classifier, forecaster):
    from framework.tracking.pyfunc import load_text_model

    top = load_text_model(classifier.last_checkpoint).predict(None, ["Nakamura"])
    assert len(top) == 1 and len(top[0].split(", ")) == 3
    import pandas as pd

    nxt = load_text_model(forecaster.last_checkpoint).predict(
        None, pd.DataFrame({"history": [[5, 11, 16, 23, 36, 58, 29, 20, 10, 8]]}))
    assert len(nxt) == 1 and len(nxt[0]) == 1 and np.isfinite(nxt[0][0])  # numbers


@pytest.mark.parametrize("overrides, message", [
    (["task=classify", "dataset=dinos"], "task 'classify' needs a dataset of kind labelled"),
    (["task=lm", "dataset=names"], "use task=classify"),
    (["task=lm", "model.bidirectional=true"], "model.bidirectional=true does not fit task 'lm'"),
    (["task=forecast", "dataset=sunspots", "model.bidirectional=true"], "does not fit"),
])
def test_combinations_that_do_not_fit_are_one_line_errors(tmp_path, overrides, message):
    require_run_data(overrides)
    with pytest.raises(ConfigError, match=message):
        Trainer(run_config([*overrides, *TINY]), out_dir=tmp_path,
                reporter=Reporter(Quiet(), lambda _: None))
