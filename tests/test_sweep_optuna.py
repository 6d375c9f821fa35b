"""``hparams_search=optuna``: trials are child runs, the study's best params land on the parent."""

from __future__ import annotations

import pytest
import yaml

from tests.test_sweep import client_for, parent_and_children, sweep


@pytest.mark.slow
def test_optuna_trials_are_children_and_best_params_go_to_parent(tmp_path):
    # hparams_search=optuna sets hydra.mode=MULTIRUN; `-m` (added by sweep()) is then harmless.
    sweep(tmp_path, ["hparams_search=optuna", "hydra.sweeper.n_trials=3",
                     "hydra.sweeper.sampler.n_startup_trials=2", "mlflow.experiment_name=study",
                     "cell.hidden_size=choice(8,16)"])
    results_file, = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    results = yaml.safe_load(results_file.read_text())
    parent, children = parent_and_children(client_for(tmp_path), "study")
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert {c.info.status for c in children} == {"FINISHED"}
    # The study minimised the app's return value: the final validation loss.
    best_child = min(children, key=lambda c: c.data.metrics["val_loss"])
    assert results["best_value"] == pytest.approx(best_child.data.metrics["val_loss"])
    assert parent.data.metrics["optuna_best_value"] == pytest.approx(results["best_value"])
    for key, value in results["best_params"].items():
        assert parent.data.params[f"best.{key}"] == str(value)
        assert best_child.data.params[key] == str(value)
    assert parent.data.params["optuna.sampler"] == "TPESampler"
