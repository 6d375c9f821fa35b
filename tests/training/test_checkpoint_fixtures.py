"""Checkpoints of every task written before the checkpoint package still load, rebuild the same
model and answer as they did when they were written (tests/fixtures/tasks/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from framework.cli.predict import run as predict
from framework.nn.generation import generate, start_ids
from framework.plugins import load_plugins
from framework.registry import SAMPLERS
from framework.tracking.pyfunc import input_example, load_text_model
from framework.training.checkpoint import load_model, read_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
LM = FIXTURES / "lm_dinos_gru.npz"
CLASSIFY = FIXTURES / "classify_names_bigru.npz"
FORECAST = FIXTURES / "forecast_sunspots_lstm_diff1.npz"
VECTORS = FIXTURES / "classify_vowels_bigru.npz"
load_plugins()


def _predict(path: Path, **request) -> list[str]:
    cfg = {"checkpoint": str(path), "run_id": None, "text": None, "top_k": 3, "history": None}
    return predict(OmegaConf.create({**cfg, **request}))


@pytest.mark.parametrize("path", [LM, CLASSIFY, FORECAST, VECTORS], ids=lambda p: p.stem)
def test_old_task_checkpoints_load_for_resume(path):
    ckpt = read_checkpoint(path, for_resume=True)
    assert ckpt.meta.step == 3 and ckpt.meta.smooth_loss is not None
    assert "t" in ckpt.optimizer_state
    model, _, _ = load_model(path)
    assert {k: v.shape for k, v in model.params.items()} == model.param_shapes()


def test_old_language_model_generates_as_it_did():
    model, vocab, meta = load_model(LM)
    assert meta.model.task_meta == {"name": "lm", "options": {}}
    texts = generate(model, vocab, SAMPLERS.build({"name": "categorical"}), prompt="", length=20,
                     num_samples=3, window=None, rng=np.random.default_rng(7),
                     start=start_ids(vocab, meta.corpus_kind, "names"))
    assert texts == ["pf", "xhvlgkouzdanxnferei", "twuhfmzpfpalqm"]
    logits, _ = model.step(np.array([1]), model.zero_state(1))
    np.testing.assert_allclose(logits[0, :5], [0.0409, -0.00699, 0.011879, 0.05165, 0.041551],
                               atol=1e-6)
    served = load_text_model(LM)
    assert served.predict(None, {"prompt": "ab", "num_samples": 2, "seed": 3, "length": 10}) == [
        "abbubmsjksgr", "abfokdcnoyqh"]
    assert input_example(meta, vocab) == {"prompt": ["ab"], "num_samples": [1], "length": [20],
                                          "seed": [0]}


def test_old_classifier_predicts_as_it_did():
    assert _predict(CLASSIFY, text=["Nakamura", "Schmidt"]) == [
        "Nakamura: Portuguese 0.070, Italian 0.066, Russian 0.063",
        "Schmidt: Spanish 0.065, Greek 0.061, Korean 0.061"]
    served = load_text_model(CLASSIFY)
    assert served.predict(None, ["Dubois"]) == ["Polish 0.0640, Irish 0.0590, Italian 0.0589"]
    _, vocab, meta = load_model(CLASSIFY)
    assert input_example(meta, vocab) == {"text": ["AB"]}
    assert meta.model.task_meta["bidirectional"] is True and len(meta.model.task_meta[
        "classes"]) == 18


def test_old_forecaster_predicts_as_it_did():
    assert _predict(FORECAST, history=[5, 11, 16, 23, 36, 58]) == ["next 2 values: 62.8788 "
                                                                   "66.7633"]
    served = load_text_model(FORECAST)
    (answer,) = served.predict(None, {"history": "5 11 16 23 36 58"})
    assert answer == pytest.approx([62.8788, 66.7633], abs=5e-5)  # numbers, not text
    _, vocab, meta = load_model(FORECAST)
    assert vocab is None
    assert input_example(meta, vocab) == {"history": [" ".join(["0.356098"] * 5)]}
    task = meta.model.task_meta
    assert (task["window"], task["horizon"], task["difference"]) == (4, 2, 1)


TINY = ["cell.hidden_size=4", "train.batch_size=4", "train.log_every=1", "train.sample_every=0",
        "mlflow.enabled=false", "train.num_samples=1", "train.steps=4", "train.eval_every=4",
        "train.checkpoint_every=4", "train.eval_batches=1"]
WRITTEN_WITH = {  # the overrides each fixture was trained with (README.md of the folder)
    LM: ["task=lm", "dataset=dinos", "cell=gru", "train.seq_len=6"],
    CLASSIFY: ["task=classify", "dataset=names", "cell=gru", "model.bidirectional=true",
               "dataset.ascii=true"],
    FORECAST: ["task=forecast", "dataset=sunspots", "cell=lstm", "task.window=4",
               "task.horizon=2", "task.difference=1"],
    VECTORS: ["task=classify", "dataset=japanese_vowels", "cell=gru", "model.bidirectional=true"],
}


@pytest.mark.parametrize("path", [LM, CLASSIFY, FORECAST, VECTORS], ids=lambda p: p.stem)
def test_old_task_checkpoints_resume_with_the_config_they_were_written_with(path, tmp_path):
    """Their saved config (the resolved config then) has no conflict with today's validated
    config of the same overrides, and a trainer continues from them."""
    from framework.training.trainer import Reporter, Trainer
    from tests.helpers import run_config

    class Quiet:
        def log_metrics(self, values, step) -> None:
            pass

    rc = run_config([*WRITTEN_WITH[path], *TINY])
    trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(Quiet(), lambda _: None))
    trainer.restore(path)
    assert trainer.step == 3
    trainer.run()
    assert trainer.step == 4 and trainer.last_checkpoint.is_file()


def test_old_vector_sequence_classifier_predicts_as_it_did(tmp_path):
    seq = [[round(0.1 * (t + 1) - 0.05 * d, 2) for d in range(12)] for t in range(4)]
    frames = tmp_path / "frames.txt"
    frames.write_text("\n".join(" ".join(str(v) for v in row) for row in seq), encoding="utf-8")
    assert _predict(VECTORS, sequence=str(frames)) == [f"{frames}: 2 0.205, 5 0.160, 7 0.136"]
    served = load_text_model(VECTORS)
    assert served.predict(None, {"sequence": seq}) == ["2 0.2050, 5 0.1602, 7 0.1359"]
    _, vocab, meta = load_model(VECTORS)
    task = meta.model.task_meta
    assert vocab is None and task["inputs"] == "sequences" and len(task["feature_std"]) == 12
    assert input_example(meta, vocab)["sequence"][0].startswith("[[0.869106, -0.554501, ")
