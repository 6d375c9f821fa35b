"""``task.difference``: a forecaster trained on the series' differences, its metrics, checkpoint,
``framework.predict`` and served model all in the series' original units; order 0 unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from framework.data.corpora.differencing import difference, integrate, one_step, scaling
from framework.errors import CheckpointError, ConfigError
from framework.tasks.forecast import forecast_next, forecast_values
from framework.tasks.metrics import mae, rmse
from framework.training.checkpoint import load_checkpoint, load_model
from tests.conftest import require_run_data
from tests.helpers import run_cli
from tests.reliability.test_reliability_input import _rewritten
from tests.tasks.test_tasks import FORECAST, train

DIFF = [*FORECAST, "task.difference=1"]
HISTORY = [5, 11, 16, 23, 36, 58, 29, 20, 10, 8]


@pytest.fixture(scope="module")
def differenced(tmp_path_factory):
    return train(DIFF, tmp_path_factory.mktemp("difference"), steps=20)


@pytest.mark.parametrize("order", [1, 2])
def test_integrate_and_one_step_undo_the_difference(order):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(30, 2)), axis=0) + 100.0
    d = difference(x, order)
    assert np.isnan(d[:order]).all()
    np.testing.assert_allclose(d[order:], np.diff(x, n=order, axis=0))
    # The true differences after the first 20 values rebuild the last 10 values.
    np.testing.assert_allclose(integrate(x[:20], d[20:], order), x[20:], rtol=0, atol=1e-9)
    starts = np.arange(20, 30)
    np.testing.assert_allclose(one_step(x, starts, d[20:], order), x[20:], rtol=0, atol=1e-9)
    # A one-step value is the true history plus the predicted difference's error.
    np.testing.assert_allclose(one_step(x, starts, d[20:] + 0.5, order), x[20:] + 0.5, atol=1e-9)


def test_order_zero_is_the_identity():
    x = np.arange(12.0).reshape(6, 2)
    assert difference(x, 0) is not None and np.array_equal(difference(x, 0), x)
    assert np.array_equal(integrate(x[:2], x[2:], 0), x[2:])
    assert np.array_equal(one_step(x, np.arange(2, 6), x[2:], 0), x[2:])


def test_the_feed_windows_hold_standardised_training_differences(differenced):
    corpus, feed = differenced.corpus, differenced.feed
    assert feed.difference == 1
    diffs = np.diff(corpus.train[:, 0])
    mean, std = scaling(corpus, 1)
    assert mean[0] == pytest.approx(diffs.mean()) and std[0] == pytest.approx(diffs.std())
    assert feed.n_windows == corpus.n_train - 9 - 1  # the first value has no difference
    batch = feed.make(np.array([10, corpus.n_train]))
    expected = (np.diff(corpus.values[:, 0])[[np.arange(0, 9), corpus.n_train - 10 + np.arange(9)]]
                - mean[0]) / std[0]
    np.testing.assert_allclose(batch.inputs[:, :, 0].T, expected, rtol=1e-6)
    assert feed.starts(0).min() >= 10
    np.testing.assert_array_equal(feed.val_starts(), np.arange(corpus.n_train, len(corpus.values)))


def test_metrics_are_levels_from_the_true_last_value(differenced):
    corpus, feed, model = differenced.corpus, differenced.feed, differenced.model
    metrics = differenced.last_metrics
    preds = np.concatenate([model.predict(b.inputs) for b in feed.val_batches()])[:, 0, 0]
    levels = corpus.values[corpus.n_train - 1 : -1, 0] + preds * feed.std[0] + feed.mean[0]
    assert metrics["val_rmse"] == pytest.approx(rmse(corpus.val[:, 0], levels))
    assert metrics["val_mae"] == pytest.approx(mae(corpus.val[:, 0], levels))
    assert metrics["val_rmse"] > 5  # sunspot numbers, not standardised differences
    # The recursive forecast starts from the last training value and adds its own differences.
    path = differenced.task.recursive(model, feed)
    first = corpus.values[corpus.n_train - 1, 0] + forecast_next(model, feed.history())[0, 0] \
        * feed.std[0] + feed.mean[0]
    assert path[0, 0] == pytest.approx(first)
    assert metrics["val_recursive_rmse"] == pytest.approx(rmse(corpus.val, path))
    # The baselines stay on the undifferenced series.
    assert differenced.task.start_metrics(corpus, differenced.rc)["baseline_ar_rmse"] == \
        pytest.approx(19.440, abs=1e-3)


def test_the_checkpoint_predict_and_the_served_model_answer_in_levels(differenced, tmp_path):
    _, meta = load_checkpoint(differenced.last_checkpoint)
    task = meta["task"]
    assert task["difference"] == 1 and task["options"]["difference"] == 1
    assert task["mean"] == pytest.approx(list(differenced.feed.mean))
    model, _, loaded = load_model(differenced.last_checkpoint)
    assert loaded.model.task_meta["difference"] == 1
    scaled = (np.diff(np.array(HISTORY, float)) - task["mean"][0]) / task["std"][0]
    expected = HISTORY[-1] + forecast_next(model, scaled[:, None])[0, 0] * task["std"][0] \
        + task["mean"][0]
    nxt = forecast_values(model, loaded.model.task_meta, HISTORY)
    assert nxt.shape == (1, 1) and nxt[0, 0] == pytest.approx(expected)
    proc = run_cli("framework.predict", [f"checkpoint={differenced.last_checkpoint}",
                                     "history=[" + ",".join(map(str, HISTORY)) + "]"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    label, value = proc.stdout.strip().split(": ")
    assert label == "next value" and float(value) == pytest.approx(expected, rel=1e-5)
    short = run_cli("framework.predict", [f"checkpoint={differenced.last_checkpoint}",
                                      "history=[1,2,3,4,5,6,7,8,9]"], tmp_path)
    assert short.returncode == 2 and "task.window=9 plus task.difference=1" in short.stderr

    from framework.tracking.pyfunc import load_text_model

    served = load_text_model(differenced.last_checkpoint).predict(
        None, pd.DataFrame({"history": [HISTORY]}))
    assert served[0][0] == pytest.approx(expected, rel=1e-5)


def test_a_checkpoint_without_the_field_is_order_zero(forecaster_checkpoint, tmp_path):
    def drop(meta):
        meta["task"].pop("difference")
        meta["config"]["task"].pop("difference")
        meta["task"]["options"].pop("difference")

    old = _rewritten(forecaster_checkpoint, tmp_path / "old.npz", meta_change=drop)
    model, _, meta = load_model(old)
    assert meta.model.task_meta["difference"] == 0
    assert np.isfinite(forecast_values(model, meta.model.task_meta, HISTORY)).all()


@pytest.mark.parametrize("value, message", [
    ("1", "'task.difference' must be an integer in \\[0, 2\\]"),
    (3, "'task.difference' must be an integer in \\[0, 2\\]"),
    (True, "'task.difference' must be an integer"),
    (1, "'task.difference' must be the task options' difference"),
])
def test_a_bad_difference_field_is_refused(forecaster_checkpoint, tmp_path, value, message):
    bad = _rewritten(forecaster_checkpoint, tmp_path / "bad.npz",
                     meta_change=lambda m: m["task"].update(difference=value))
    with pytest.raises(CheckpointError, match=message):
        load_model(bad)


@pytest.fixture(scope="module")
def forecaster_checkpoint(tmp_path_factory):
    return train(FORECAST, tmp_path_factory.mktemp("levels"), steps=2).last_checkpoint


@pytest.mark.parametrize("overrides, message", [
    (["task.difference=3"], "difference must be in \\[0, 2\\]"),
    (["task.difference=1", "task.window=300"], "plus task.difference=1 need more than"),
])
def test_bad_orders_are_one_line_errors(tmp_path, overrides, message):
    from framework.training.trainer import Reporter, Trainer
    from tests.helpers import run_config
    from tests.tasks.test_tasks import Quiet

    require_run_data(FORECAST)
    with pytest.raises(ConfigError, match=message):
        Trainer(run_config([*FORECAST, *overrides]), out_dir=tmp_path,
                reporter=Reporter(Quiet(), lambda _: None))


def test_constant_differences_are_refused():
    class Linear:
        name, train = "line", np.arange(20.0)[:, None]

    with pytest.raises(ConfigError, match="differences of order 2 are constant"):
        scaling(Linear(), 2)


def test_a_run_saved_before_the_option_existed_resumes(forecaster_checkpoint, tmp_path):
    from framework.training.trainer import Reporter, Trainer
    from tests.helpers import run_config
    from tests.tasks.test_tasks import Quiet

    def drop(meta):
        for section in (meta["task"], meta["config"]["task"], meta["task"]["options"]):
            section.pop("difference")

    old = _rewritten(forecaster_checkpoint, tmp_path / "old.npz", meta_change=drop)
    overrides = [*FORECAST, "train.steps=4", "train.eval_every=4", "train.checkpoint_every=4"]
    trainer = Trainer(run_config(overrides), out_dir=tmp_path / "resumed",
                      reporter=Reporter(Quiet(), lambda _: None))
    trainer.restore(old)
    assert trainer.step == 2 and trainer.run().steps == 4
    differenced = Trainer(run_config([*overrides, "task.difference=1"]), out_dir=tmp_path / "d",
                          reporter=Reporter(Quiet(), lambda _: None))
    with pytest.raises(CheckpointError, match="task.difference=0 in the checkpoint, 1 now"):
        differenced.restore(old)
