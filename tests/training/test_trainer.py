"""The training loop in-process: resume equality, divergence, conflicting resume."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from framework.errors import CheckpointError, DivergenceError
from framework.training.runtime import Interrupted, StopSignals
from framework.training.trainer import Reporter, Trainer
from tests.conftest import needs_data
from tests.helpers import QUICK, run_config


class RecordingTracker:
    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict]] = []

    def log_metrics(self, values: dict, step: int) -> None:
        self.metrics.append((step, dict(values)))


def make_trainer(overrides: list[str], out_dir) -> Trainer:
    rc = run_config([*QUICK, *overrides])
    return Trainer(rc, out_dir=out_dir, reporter=Reporter(RecordingTracker(), lambda _: None))


FEEDS = {
    "stream": ["dataset=tinyshakespeare", "cell=lstm", "train.seq_len=10", "optimizer=adagrad"],
    "names+dropout": ["dataset=dinos", "cell=gru", "model.num_layers=2", "model.dropout=0.3"],
    "example": ["dataset=dinos", "cell=rnn", "train.feed=example", "train.loss=sum",
                "optimizer=sgd", "optimizer.lr=0.01", "clip=value", "dtype=float64",
                "train.batch_size=1"],
    "windows": ["dataset=sonnets", "cell=lstm", "train.feed=windows", "train.seq_len=12",
                "sampler=temperature"],
}


@pytest.mark.parametrize("feed", sorted(FEEDS))
@needs_data("dinos.txt", "sonnets.txt", "tinyshakespeare.txt")
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, feed):
    overrides = FEEDS[feed]
    full = make_trainer([*overrides, "train.steps=14"], tmp_path / "full")
    full.run()
    half = make_trainer([*overrides, "train.steps=7"], tmp_path / "half")
    half.run()
    resumed = make_trainer([*overrides, "train.steps=14"], tmp_path / "resumed")
    resumed.restore(half.last_checkpoint)
    assert resumed.step == 7
    resumed.run()
    for name, value in full.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], value, err_msg=name)
    assert resumed.smooth_loss == full.smooth_loss


@needs_data("dinos.txt")
def test_resume_with_conflicting_config_is_refused(tmp_path):
    first = make_trainer(["cell=gru"], tmp_path / "a")
    first.run()
    other = make_trainer(["cell=gru", "train.batch_size=5"], tmp_path / "b")
    with pytest.raises(CheckpointError, match=r"train.batch_size=4 in the checkpoint, 5 now"):
        other.restore(first.last_checkpoint)


@needs_data("dinos.txt")
def test_divergence_stops_with_a_clear_message_and_keeps_last_good_checkpoint(tmp_path):
    trainer = make_trainer(["cell=rnn", "optimizer=sgd", "optimizer.lr=1e9", "clip=none",
                            "train.checkpoint_every=1", "train.steps=50"], tmp_path)
    with pytest.raises(DivergenceError, match=r"diverged at step \d+.*lower optimizer.lr"):
        trainer.run()
    assert trainer.last_checkpoint is not None and trainer.last_checkpoint.is_file()


@needs_data("dinos.txt")
def test_metrics_are_logged_with_step_indices(tmp_path):
    trainer = make_trainer(["cell=rnn"], tmp_path)
    trainer.run()
    steps = [step for step, values in trainer.report.tracker.metrics if "train_loss" in values]
    assert steps == list(range(12))
    assert any("val_loss" in values for _, values in trainer.report.tracker.metrics)


@needs_data("tinyshakespeare.txt")
def test_eval_batches_limits_validation_to_that_many_batches(tmp_path):
    trainer = make_trainer(["dataset=tinyshakespeare", "cell=rnn", "train.eval_batches=2"],
                           tmp_path)
    seen = []
    real_loss = trainer.model.loss

    def counting_loss(*args, **kwargs):
        seen.append(1)
        return real_loss(*args, **kwargs)

    trainer.model.loss = counting_loss
    assert trainer.evaluate()["val_loss"] > 0 and len(seen) == 2


@needs_data("dinos.txt")
def test_training_limits_blas_threads_as_configured(tmp_path, monkeypatch):
    """The training command runs the loop with ``threads`` BLAS threads."""
    from threadpoolctl import threadpool_info

    from framework.cli import train as app
    from framework.nn.models.language_model import CharRNN
    from tests.helpers import QUICK, compose_config

    seen = []
    real = CharRNN.loss_and_grads

    def spy(self, *args, **kwargs):
        seen.append({info["num_threads"] for info in threadpool_info()
                     if info["user_api"] == "blas"})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CharRNN, "loss_and_grads", spy)
    monkeypatch.chdir(tmp_path)
    app.run(compose_config([*QUICK, "cell=rnn", "threads=1", "train.steps=2"]))
    assert seen and all(threads == {1} for threads in seen)


def test_lr_schedule_factor():
    from framework.registry import SCHEDULES

    def schedule(name, **options):
        return SCHEDULES.build({"name": name, **options})

    assert [schedule("constant")(s, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    cosine = schedule("cosine", lr_final=0.1)
    assert cosine(0, 11) == 1.0
    assert cosine(10, 11) == pytest.approx(0.1)
    assert cosine(5, 11) == pytest.approx(0.55)
    warm = schedule("constant", warmup_steps=4)
    assert [warm(s, 10) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    warm_cosine = schedule("cosine", warmup_steps=3)
    assert [warm_cosine(s, 14) for s in range(3)] == [1 / 3, 2 / 3, 1.0]
    assert warm_cosine(3, 14) == 1.0 and warm_cosine(13, 14) == pytest.approx(0.1)


@needs_data("tinyshakespeare.txt")
def test_cosine_schedule_is_applied_and_resumes_bit_identically(tmp_path):
    overrides = ["dataset=tinyshakespeare", "cell=gru", "train.lr_schedule=cosine",
                 "train.warmup_steps=3", "optimizer=adam", "optimizer.lr=0.01"]
    full = make_trainer([*overrides, "train.steps=14"], tmp_path / "full")
    full.run()
    lrs = [values["lr"] for _, values in full.report.tracker.metrics if "lr" in values]
    assert lrs[0] == pytest.approx(0.01 / 3) and lrs[-1] == pytest.approx(0.001)
    half = make_trainer([*overrides, "train.steps=14"], tmp_path / "half")
    real_metrics = half.report.metrics

    def interrupt_at_step_6(values, step):  # a real SIGINT in the middle of the schedule
        real_metrics(values, step)
        if step == 6 and "train_loss" in values:
            os.kill(os.getpid(), signal.SIGINT)

    half.report.metrics = interrupt_at_step_6
    with StopSignals() as stop, pytest.raises(Interrupted) as info:
        half.run(stop=stop)
    resumed = make_trainer([*overrides, "train.steps=14"], tmp_path / "resumed")
    resumed.restore(info.value.checkpoint)
    assert resumed.step == 7
    resumed.run()
    for name, value in full.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], value, err_msg=name)
