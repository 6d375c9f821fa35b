"""A command that refuses before any work leaves nothing behind: no ``outputs/<date>/<time>/``
(with its ``.hydra/`` and log), no sweep folder, no store; a folder that existed before stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import needs_data
from tests.helpers import run_cli

HUGE = "cell.hidden_size=100000000"  # refused by the memory check, before any training


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_line_error(proc, needle: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error:"), proc.stderr
    assert needle in lines[0], proc.stderr


@needs_data("dinos.txt")
@pytest.mark.parametrize("tracking", ["mlflow.enabled=false", "mlflow.enabled=true"])
def test_a_run_refused_by_the_memory_check_leaves_no_folder(tmp_path, tracking):
    proc = run_cli("framework", [HUGE, "train.steps=1", tracking], tmp_path,
                   env={"RNNLAB_SKIP_MEMORY_CHECK": ""})
    one_line_error(proc, "of memory per training step")
    assert files_under(tmp_path) == []


def test_a_missing_dataset_file_leaves_no_folder_even_a_nested_run_dir(tmp_path):
    proc = run_cli("framework", ["dataset=textfile", f"dataset.path={tmp_path / 'none.txt'}",
                                 "train.steps=1", "hydra.run.dir=runs/a/b"], tmp_path)
    one_line_error(proc, "does not exist")
    assert files_under(tmp_path) == []


def test_a_run_folder_that_existed_before_is_kept(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    (tmp_path / "empty").mkdir()
    for folder in ("mine", "empty"):
        proc = run_cli("framework", ["dataset=textfile", f"dataset.path={tmp_path / 'no.txt'}",
                                     "train.steps=1", f"hydra.run.dir={folder}"], tmp_path)
        one_line_error(proc, "does not exist")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine\n"
    assert (tmp_path / "empty").is_dir()  # Hydra's files are in it, the folder is the user's


def test_only_the_refused_runs_folder_goes_not_its_neighbours(tmp_path):
    day = tmp_path / "outputs" / "day"
    (day / "earlier").mkdir(parents=True)
    (day / "earlier" / "train.log").write_text("an earlier run\n")
    proc = run_cli("framework", ["dataset=textfile", f"dataset.path={tmp_path / 'no.txt'}",
                                 "train.steps=1", "hydra.run.dir=outputs/day/now"], tmp_path)
    one_line_error(proc, "does not exist")
    assert files_under(tmp_path) == ["outputs", "outputs/day", "outputs/day/earlier",
                                     "outputs/day/earlier/train.log"]


def test_a_run_that_did_work_keeps_its_folder(tmp_path):
    """A failure after the first checkpoint is not a refusal: the folder and its files stay."""
    from omegaconf import OmegaConf

    from framework.cli.run_dir import RunDirCallback, remove_unused_run_dir

    run_dir = tmp_path / "outputs" / "run"
    RunDirCallback().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(run_dir)}}}))
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "latest.npz").write_bytes(b"x")
    assert not remove_unused_run_dir(run_dir)
    assert (run_dir / "checkpoints" / "latest.npz").is_file()


def test_a_sweep_stopped_by_a_shared_refusal_leaves_no_sweep_folder(tmp_path):
    proc = run_cli("framework", ["-m", "dataset=textfile",
                                 f"dataset.path={tmp_path / 'none.txt'}", "cell=rnn,gru",
                                 "train.steps=1", "mlflow.enabled=false"], tmp_path)
    assert proc.returncode != 0
    assert "the sweep stopped there" in proc.stderr.strip().splitlines()[-1]
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("tracking", ["mlflow.enabled=false", "mlflow.enabled=true"])
def test_a_tracked_grid_with_a_bad_shared_value_is_refused_before_anything_exists(tmp_path,
                                                                                  tracking):
    """The first job's config is checked before the sweep's folder or parent run exists."""
    proc = run_cli("framework", ["-m", "cell=rnn,gru", "train.steps=-3", tracking], tmp_path)
    one_line_error(proc, "train.steps must be >= 0, got -3")
    assert files_under(tmp_path) == []


def test_a_grid_over_a_required_key_is_not_refused_for_its_default(tmp_path):
    """The first job is composed with the sweep's first values (``dataset.path`` has none by
    default)."""
    texts = [tmp_path / "texts" / name for name in ("a.txt", "b.txt")]
    texts[0].parent.mkdir()
    for text in texts:
        text.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    paths = ",".join(map(str, texts))
    proc = run_cli("framework", ["-m", "dataset=textfile", f"dataset.path={paths}",
                                 "cell.hidden_size=4", "train.steps=1", "train.sample_every=0",
                                 "mlflow.enabled=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done: 1 step") == 2
    assert (tmp_path / "multirun").is_dir()


def test_generate_and_predict_refusals_write_no_file(tmp_path):
    from tests.tracking.test_pyfunc import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "model" / "c.npz", hidden_size=4, num_layers=1)
    before = files_under(tmp_path)
    proc = run_cli("framework.generate", [f"checkpoint={checkpoint}", "out=piece.mid"], tmp_path)
    one_line_error(proc, "needs a model trained on a music dataset")
    proc = run_cli("framework.predict", [f"checkpoint={checkpoint}", "text=Q"], tmp_path)
    one_line_error(proc, "not in the vocabulary")
    assert files_under(tmp_path) == before
