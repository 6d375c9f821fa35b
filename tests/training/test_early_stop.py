"""Early stopping: when it stops, min_delta in both directions, the best restored into the final
checkpoint, resume keeping its counter, off by default, bad values, pruning composing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from framework.errors import CheckpointError, ConfigError
from framework.training.checkpoint import read_checkpoint, save_checkpoint
from framework.training.early_stop import BestEval
from framework.training.trainer import Pruned, Reporter, Trainer
from tests.conftest import needs_data
from tests.helpers import QUICK, run_config

# Evals at steps 0, 2, 4, ... (and the last step); the checkpoint schedule is every 4 steps.
EVERY_2 = [*QUICK, "train.eval_every=2", "train.checkpoint_every=4", "train.sample_every=0",
           "dataset=dinos", "cell=gru"]


class RecordingTracker:
    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict]] = []

    def log_metrics(self, values: dict, step: int) -> None:
        self.metrics.append((step, dict(values)))


def scripted(overrides: list[str], out_dir, values: dict[int, float],
             metric: str = "val_loss") -> tuple[Trainer, dict[int, dict]]:
    """A trainer whose evals report ``values[step]`` as ``metric`` (the objective), and the
    parameters it had at each eval."""
    rc = run_config([*EVERY_2, *overrides])
    trainer = Trainer(rc, out_dir=out_dir, reporter=Reporter(RecordingTracker(), lambda _: None))
    seen: dict[int, dict] = {}

    def evaluate(model, feed, rc):
        step = trainer.step - 1  # the step just trained, as the metrics are logged
        seen[step] = {k: v.copy() for k, v in model.params.items()}
        return {metric: values[step]}

    trainer.task.evaluate = evaluate
    return trainer, seen


def logged(trainer: Trainer, name: str) -> list[tuple[int, float]]:
    return [(step, values[name]) for step, values in trainer.report.tracker.metrics
            if name in values]


def assert_params_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


# ------------------------------------------------------------------------------------- stopping
@needs_data("dinos.txt")
def test_stops_after_patience_evals_without_an_improvement_and_restores_the_best(tmp_path):
    # 2.0 at step 2 is the best: 1.9995 beats it by less than min_delta, so it does not count.
    values = {0: 3.0, 2: 2.0, 4: 2.5, 6: 1.9995, 8: 2.1, 10: 1.0}
    trainer, seen = scripted(["train.steps=40", "train.early_stop.patience=3",
                              "train.early_stop.min_delta=0.001"], tmp_path, values)
    result = trainer.run()
    assert trainer.step == 9 and result.steps == 9  # the eval at step 8 was the third bad one
    assert sorted(seen) == [0, 2, 4, 6, 8]
    assert result.best_step == 2
    assert result.early_stop == ("stopped at step 8: no val_loss improvement of more than 0.001 "
                                 "in 3 evals; best 2.0000 at step 2, restored")
    assert result.final_metrics == {"val_loss": 2.0}
    final = read_checkpoint(result.final_checkpoint)
    assert_params_equal(final.params, seen[2])  # the best eval's parameters, not the last
    assert_params_equal(trainer.model.params, seen[2])
    assert final.meta.early_stop == {"best_step": 2, "bad_evals": 3, "metrics": {"val_loss": 2.0},
                                     "restored": True}
    assert final.meta.step == 9 and final.meta.best_val_loss == 2.0
    # best.npz, written at the improvement, holds the same parameters
    assert_params_equal(read_checkpoint(result.best_checkpoint).params, seen[2])
    assert logged(trainer, "best_step") == [(8, 2.0)]
    assert logged(trainer, "best_val_loss") == [(8, 2.0)]


@needs_data("dinos.txt")
def test_a_run_that_never_runs_out_of_patience_ends_at_its_last_step_with_the_best(tmp_path):
    values = {0: 3.0, 2: 2.0, 4: 2.5, 6: 2.4, 7: 2.6}  # step 7: the last step's eval
    trainer, seen = scripted(["train.steps=8", "train.early_stop.patience=5",
                              "train.checkpoint_every=0"], tmp_path, values)
    result = trainer.run()
    assert result.steps == 8
    assert result.early_stop == "all 8 steps ran; best 2.0000 at step 2, restored"
    assert_params_equal(read_checkpoint(result.final_checkpoint).params, seen[2])
    assert result.best_checkpoint is None  # checkpoint_every=0 writes no best.npz


@pytest.mark.parametrize(("min_delta", "values", "stop", "best"), [
    # minimise (val_loss): 2.9995 improves on 3.0 only without a min_delta
    (0.0, {0: 3.0, 2: 2.9995, 4: 3.1, 6: 3.2}, 6, 2),
    (0.001, {0: 3.0, 2: 2.9995, 4: 3.1, 6: 3.2}, 4, 0),
])
@needs_data("dinos.txt")
def test_min_delta_when_lower_is_better(tmp_path, min_delta, values, stop, best):
    trainer, _ = scripted(["train.steps=40", "train.early_stop.patience=2",
                           f"train.early_stop.min_delta={min_delta}"], tmp_path, values)
    result = trainer.run()
    assert (result.steps - 1, result.best_step) == (stop, best)


@pytest.mark.parametrize(("min_delta", "values", "stop", "best"), [
    # maximise (val_accuracy): 0.6005 improves on 0.6 only without a min_delta; an equal value
    # never improves
    (0.0, {0: 0.5, 2: 0.6, 4: 0.6005, 6: 0.6005, 8: 0.3}, 8, 4),
    (0.001, {0: 0.5, 2: 0.6, 4: 0.6005, 6: 0.6005, 8: 0.3}, 6, 2),
])
@needs_data("names/Russian.txt")
def test_min_delta_when_higher_is_better(tmp_path, min_delta, values, stop, best):
    trainer, seen = scripted(["task=classify", "dataset=names", "task.objective=val_accuracy",
                              "train.steps=40", "train.early_stop.patience=2",
                              f"train.early_stop.min_delta={min_delta}"], tmp_path, values,
                             metric="val_accuracy")
    result = trainer.run()
    assert (result.steps - 1, result.best_step) == (stop, best)
    assert result.final_metrics == {"val_accuracy": values[best]}
    assert f"best {values[best]:.4f} at step {best}, restored" in result.early_stop
    assert_params_equal(read_checkpoint(result.final_checkpoint).params, seen[best])
    assert logged(trainer, "best_val_accuracy") == [(stop, values[best])]


def test_best_eval_semantics_in_the_minimised_form():
    best = BestEval(patience=2, min_delta=0.5)
    params = {"w": np.zeros(2)}
    assert best.observe(0, 3.0, {"m": 3.0}, params)
    params["w"][...] = 1.0  # the kept copy does not follow the live parameters
    assert not best.observe(1, 2.6, {"m": 2.6}, params)  # by 0.4, not more than 0.5
    assert not best.observe(2, math.nan, {"m": math.nan}, params)  # NaN never improves
    assert best.stopped and best.best_step == 0 and best.bad_evals == 2
    np.testing.assert_array_equal(best.best_params["w"], np.zeros(2))
    best.swap_into(params)
    assert best.restored and params["w"].tolist() == [0.0, 0.0]
    best.swap_into(params)  # twice: back to the last parameters
    assert not best.restored and params["w"].tolist() == [1.0, 1.0]
    assert BestEval().to_meta() is None and not BestEval().stopped  # off: nothing kept


# ---------------------------------------------------------------------------------- resume
VALUES = {0: 3.0, 2: 2.0, 4: 2.5, 6: 1.5, 8: 1.7, 10: 1.8, 12: 1.6, 14: 1.9, 16: 0.1}


@pytest.mark.parametrize("half", ["end of a shorter run", "a step checkpoint"])
@needs_data("dinos.txt")
def test_resume_keeps_the_counter_and_the_best_and_is_bit_identical(tmp_path, half):
    stopping = ["train.early_stop.patience=4"]
    full, _ = scripted(["train.steps=30", *stopping], tmp_path / "full", VALUES)
    expected = full.run()
    assert expected.steps == 15 and expected.best_step == 6  # stopped at the eval at step 14
    if half == "end of a shorter run":  # its final checkpoint holds the restored best
        first, _ = scripted(["train.steps=11", *stopping], tmp_path / "half", VALUES)
        first.run()
        checkpoint = first.last_checkpoint
        assert read_checkpoint(checkpoint).meta.early_stop["restored"] is True
    else:  # written during the run, before the best moved on
        first, _ = scripted(["train.steps=30", *stopping], tmp_path / "half", VALUES)
        first.run()
        checkpoint = tmp_path / "half" / "checkpoints" / "step_000009.npz"
        assert read_checkpoint(checkpoint).meta.early_stop == {
            "best_step": 6, "bad_evals": 1, "metrics": {"val_loss": 1.5}, "restored": False}
    resumed, _ = scripted(["train.steps=30", *stopping], tmp_path / "resumed", VALUES)
    resumed.restore(checkpoint)
    result = resumed.run()
    assert (result.steps, result.best_step, result.early_stop) == (
        expected.steps, expected.best_step, expected.early_stop)
    assert resumed.best.bad_evals == full.best.bad_evals == 4
    assert_params_equal(resumed.model.params, full.model.params)
    assert_params_equal(read_checkpoint(result.final_checkpoint).params,
                        read_checkpoint(expected.final_checkpoint).params)
    assert resumed.smooth_loss == full.smooth_loss


@needs_data("dinos.txt")
def test_a_stopped_run_is_not_resumed_unless_patience_is_raised(tmp_path):
    stopped, _ = scripted(["train.steps=30", "train.early_stop.patience=2"], tmp_path / "a",
                          VALUES)
    stopped.run()
    again, _ = scripted(["train.steps=30", "train.early_stop.patience=2"], tmp_path / "b", VALUES)
    with pytest.raises(CheckpointError, match=r"2 evals past its best \(step 6\).*raise "
                                              r"train.early_stop.patience"):
        again.restore(stopped.last_checkpoint)
    more, _ = scripted(["train.steps=30", "train.early_stop.patience=3"], tmp_path / "c", VALUES)
    more.restore(stopped.last_checkpoint)
    assert more.run().best_step == 6


# ------------------------------------------------------------------------------ off by default
@needs_data("dinos.txt")
def test_off_by_default_runs_every_step_and_writes_what_it_always_wrote(tmp_path):
    assert run_config([]).train.early_stop.patience == 0
    worse = {s: 1.0 + s for s in range(12)}  # every eval worse than the first
    trainer, seen = scripted([], tmp_path, worse)
    result = trainer.run()
    assert result.steps == 12 and result.early_stop is None and result.best_step is None
    final = read_checkpoint(result.final_checkpoint)
    assert final.meta.early_stop is None and "early_stop" not in final.meta.raw
    assert not any(name.startswith("kept/") for name in final.arrays)
    assert_params_equal(final.params, trainer.model.params)  # the last step's, not restored
    assert logged(trainer, "best_step") == []
    # without early stopping, best.npz still follows the best eval
    assert_params_equal(read_checkpoint(result.best_checkpoint).params, seen[0])


# ------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize(("override", "message"), [
    ("train.early_stop.patience=-1", r"train.early_stop.patience must be >= 0 evals"),
    ("train.early_stop.min_delta=-0.1", r"train.early_stop.min_delta must be a finite number "
                                        r">= 0, got -0.1"),
    ("train.early_stop.min_delta=nan", r"train.early_stop.min_delta must be a finite number"),
    ("train.early_stop.patience=two", r"train.early_stop.patience"),
    ("train.early_stop=5", r"train.early_stop is a section, not a value: set "
                           r"train.early_stop.patience=, train.early_stop.min_delta=; got 5"),
    ("+train.early_stop.patiense=3", r"unknown config key 'train.early_stop.patiense'; did you "
                                     r"mean 'train.early_stop.patience'"),
])
def test_bad_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message) as exc:
        run_config([override])
    assert "\n" not in str(exc.value)


def test_patience_needs_evals():
    with pytest.raises(ConfigError, match=r"patience=3 counts evals, but train.eval_every=0"):
        run_config(["train.early_stop.patience=3", "train.eval_every=0"])


@needs_data("dinos.txt")
def test_a_damaged_early_stop_field_or_missing_kept_parameters_are_refused(tmp_path):
    trainer, _ = scripted(["train.steps=3", "train.early_stop.patience=3"], tmp_path,
                          {0: 2.0, 2: 1.0})
    checkpoint = trainer.run().final_checkpoint
    good = read_checkpoint(checkpoint)
    meta = good.meta.raw
    for field, value, message in [
        ("bad_evals", -1, r"'early_stop.bad_evals' must be an integer"),
        ("best_step", 99, r"'early_stop.best_step' must be an integer in \[0, 3\]"),
        ("restored", "yes", r"'early_stop.restored' must be true or false"),
        ("metrics", {"val_loss": "x"}, r"'early_stop.metrics.val_loss' must be a finite number"),
    ]:
        bad = {**meta, "early_stop": {**meta["early_stop"], field: value}}
        path = tmp_path / f"{field}.npz"
        save_checkpoint(path, good.arrays, bad)
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(path)
    path = tmp_path / "no_kept.npz"
    save_checkpoint(path, {k: v for k, v in good.arrays.items() if not k.startswith("kept/")},
                    meta)
    with pytest.raises(CheckpointError, match=r"missing \['kept/"):
        read_checkpoint(path)


# ------------------------------------------------------------------------------------ pruning
@needs_data("dinos.txt")
def test_pruning_still_prunes_and_a_trial_that_stops_early_ends_normally(tmp_path):
    stopping = ["train.steps=30", "train.early_stop.patience=2"]
    pruned, _ = scripted(stopping, tmp_path / "pruned", VALUES)
    pruned.eval_hook = lambda step, metrics: step >= 4
    with pytest.raises(Pruned) as exc:
        pruned.run()
    assert exc.value.step == 4
    told = []
    kept, _ = scripted(stopping, tmp_path / "kept", VALUES)
    kept.eval_hook = lambda step, metrics: told.append(step) and False
    result = kept.run()
    assert told == [0, 2, 4, 6, 8, 10] and result.best_step == 6
    assert result.final_metrics == {"val_loss": 1.5}  # what the job returns to its study


@needs_data("dinos.txt")
def test_an_optuna_trial_that_stops_early_finishes_with_its_best_eval(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    from framework.cli.train import run
    from tests.helpers import compose_config

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    monkeypatch.chdir(tmp_path)  # the job's output folder outside Hydra
    # min_delta 10: only the first eval improves, so the run stops at the third
    cfg = compose_config([*EVERY_2, "train.steps=40", "train.early_stop.patience=2",
                          "train.early_stop.min_delta=10", "mlflow.helper_process=false",
                          f"optuna.storage={storage}", "optuna.study_name=s",
                          f"optuna.trial={trial.number}", "optuna.pruner=null"])
    value = run(cfg)
    reported = study.trials[0].intermediate_values
    assert sorted(reported) == [0, 2, 4]  # every eval reported, the last at the stop
    assert type(value) is float and value == reported[0] != reported[4]  # the best, restored


def test_compare_tables_rank_an_early_stopped_run_by_its_restored_model():
    from types import SimpleNamespace

    from framework.tracking.run_table import build_table

    def run(name, metrics):
        return SimpleNamespace(info=SimpleNamespace(run_name=name, run_id=name,
                                                    status="FINISHED", start_time=0),
                               data=SimpleNamespace(metrics=metrics, params={}, tags={}))

    stopped = run("stopped", {"val_loss": 1.9, "val_bits_per_char": 2.7, "best_step": 500.0,
                              "best_val_loss": 1.5, "best_val_bits_per_char": 2.16})
    plain = run("plain", {"val_loss": 1.7, "val_bits_per_char": 2.45})
    table = build_table([plain, stopped])
    assert [r["run"] for r in table.rows] == ["stopped", "plain"]
    assert table.rows[0]["val_loss"] == 1.5 and table.rows[0]["bits_per_char"] == 2.16


def test_the_options_are_run_params_of_their_own():
    from framework.tracking.run_info import run_record

    params, _, _ = run_record(run_config(["train.early_stop.patience=3",
                                          "train.early_stop.min_delta=0.01"]))
    assert params["train.early_stop.patience"] == "3"
    assert params["train.early_stop.min_delta"] == "0.01"
    assert "train.early_stop" not in params
