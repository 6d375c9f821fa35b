"""``python -m framework.predict`` names another task's input given to a model (``sequence=`` or
``history=`` to a text model, ``text=`` to a forecaster) instead of ignoring it or asking for
text "to classify" whatever the model does."""

from __future__ import annotations

import math

import pytest

from framework.training.trainer import Reporter, Trainer
from tests.helpers import QUICK, run_cli, run_config


class Quiet:
    def log_metrics(self, values, step) -> None:
        pass


def _train(overrides, out):
    trainer = Trainer(run_config([*QUICK, "train.steps=2", "train.eval_every=2",
                                  "train.checkpoint_every=2", *overrides]), out_dir=out,
                      reporter=Reporter(Quiet(), lambda _: None))
    trainer.run()
    return trainer.last_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict-inputs")
    pairs = root / "pairs.tsv"
    pairs.write_text("".join(f"{d} may 18\t2018-05-0{d}\n" for d in range(1, 10)))
    series = root / "series.csv"
    series.write_text("value\n" + "".join(f"{math.sin(i / 5):.4f}\n" for i in range(120)))
    return {
        "seq2seq": _train(["task=seq2seq", "dataset=parallel_textfile", f"dataset.path={pairs}",
                           "dataset.val_fraction=0.3", "train.sample_every=0"], root / "s2s"),
        "forecast": _train(["task=forecast", "dataset=csv_series", f"dataset.path={series}",
                            "dataset.column=value", "task.window=5"], root / "fc"),
    }


@pytest.mark.parametrize("model, args, line", [
    ("seq2seq", [], "pass text=<a text> or text=[a,b,...] to translate"),
    ("seq2seq", ["sequence=frames.txt"], "sequence= is the input of a classifier of vector "
     "sequences; this model reads text: pass text=<a text> or text=[a,b,...] to translate"),
    ("seq2seq", ["history=[1,2]"], "history= is the input of a forecaster; this model reads "
     "text: pass text=<a text> or text=[a,b,...] to translate"),
    ("forecast", ["text=hello"], "text= is not an input of a forecaster; pass "
     "history=[v1,v2,...] (its past values, oldest first), or nothing to forecast after the "
     "end of its training data"),
])
def test_another_tasks_input_is_named_not_ignored(checkpoints, tmp_path, model, args, line):
    proc = run_cli("framework.predict", [f"checkpoint={checkpoints[model]}", *args], tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"rnnlab: error: {line}"


def test_the_right_inputs_still_answer(checkpoints, tmp_path):
    proc = run_cli("framework.predict", [f"checkpoint={checkpoints['forecast']}",
                                         "history=[0.1,0.2,0.3,0.4,0.5]"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("next value: "), proc.stderr
    proc = run_cli("framework.predict", [f"checkpoint={checkpoints['seq2seq']}",
                                         "text=1 may 18"], tmp_path)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1, proc.stderr
