"""``task=classify`` on the user's own labelled sequences (``dataset=labelled_sequences``, a CSV of
frames): the feature names of the header reach the checkpoint, and a prediction reads a file in
the training data's units, scaled with the stored statistics.  Needs no dataset file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.training.checkpoint import load_model
from framework.training.trainer import Reporter, Trainer
from tests.helpers import run_cli, run_config


class Quiet:
    def log_metrics(self, values, step) -> None:
        pass


def write_csv(path: Path, rng: np.random.Generator, n: int) -> Path:
    """``n`` sequences of 3 features in large units (around 1000): class "up" rises, "down"
    falls, over 4 to 9 steps."""
    rows = ["sequence,label,pitch,energy,rate"]
    for i in range(n):
        label = "up" if i % 2 else "down"
        steps = int(rng.integers(4, 10))
        slope = 50.0 if label == "up" else -50.0
        for t in range(steps):
            values = 1000.0 + slope * t + rng.normal(0.0, 5.0, 3)
            rows.append(f"s{i},{label}," + ",".join(f"{v:.3f}" for v in values))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_own_csv_trains_and_predicts_in_its_units(tmp_path):
    rng = np.random.default_rng(0)
    train_csv = write_csv(tmp_path / "train.csv", rng, 40)
    test_csv = write_csv(tmp_path / "test.csv", rng, 10)
    rc = run_config(["task=classify", "dataset=labelled_sequences", f"dataset.path={train_csv}",
                     f"dataset.test_path={test_csv}", "cell=gru", "cell.hidden_size=8",
                     "train.batch_size=8", "train.steps=60", "train.eval_every=60",
                     "train.checkpoint_every=60", "train.sample_every=0", "optimizer.lr=0.02",
                     "mlflow.enabled=false"])
    trainer = Trainer(rc, out_dir=tmp_path / "run", reporter=Reporter(Quiet(), lambda _: None))
    trainer.run()
    assert trainer.last_metrics["val_accuracy"] == 1.0  # a rise and a fall are easy to tell
    _, _, meta = load_model(trainer.last_checkpoint)
    task = meta.model.task_meta
    assert task["features"] == ["pitch", "energy", "rate"] and task["classes"] == ["down", "up"]
    assert 900 < task["feature_mean"][0] < 1100  # the training frames' own units
    # Unscaled, values near 1000 would saturate every unit and give both the same answer.
    files = []
    for name, slope in (("rising", 50), ("falling", -50)):
        path = tmp_path / f"{name}.txt"
        path.write_text("\n".join(", ".join([str(1000 + slope * t)] * 3) for t in range(6)),
                        encoding="utf-8")
        files.append(path)
    proc = run_cli("framework.predict", [f"checkpoint={trainer.last_checkpoint}",
                                         f"sequence=[{files[0]},{files[1]}]", "top_k=1"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    answers = [line.split(": ") for line in proc.stdout.strip().splitlines()]
    assert [name for name, _ in answers] == [str(f) for f in files]
    assert [a.split()[0] for _, a in answers] == ["up", "down"]
    assert all(float(a.split()[1]) > 0.9 for _, a in answers)
