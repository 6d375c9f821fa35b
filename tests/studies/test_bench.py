"""The benchmark's code paths run on a tiny configuration (no timing assertions: performance
claims come from `python -m framework.bench`, never from timed unit tests)."""

from __future__ import annotations

import numpy as np
import pytest

from framework.studies import bench
from framework.studies.bench_refs import CourseLoop, course_clip_and_adam, gemm_step
from tests.conftest import dataset_files, needs_data


@pytest.mark.parametrize("cell", bench.CELL_ORDER)
@needs_data("tinyshakespeare.txt")
def test_trainer_step_and_course_loop_train(cell: str) -> None:
    trainer = bench.make_trainer(cell, 8, 3, 5)
    before = {k: v.copy() for k, v in trainer.model.params.items()}
    assert trainer.train_step().tokens == 15
    assert trainer.step == 1
    assert any(not np.array_equal(before[k], v) for k, v in trainer.model.params.items())
    clip, adam = course_clip_and_adam(1e-3, 5.0)
    course = CourseLoop(cell, trainer.vocab.size, 8, trainer.feed, clip, adam)
    start = {k: v.copy() for k, v in course.params.items()}
    assert course.step() == 15
    assert all(not np.array_equal(start[k], v) for k, v in course.params.items())
    assert gemm_step(cell, trainer.vocab.size, 8, 3, 5)() == 15


@needs_data("tinyshakespeare.txt")
def test_quick_grid_prints_a_table(capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["--quick", "--cells", "gru", "--hidden", "8", "--batch", "2",
                       "--seq", "4", "--rounds", "1", "--markdown", "--no-classify"]) == 0
    out = capsys.readouterr().out
    assert "BLAS" in out and "| gru | 8 | 2 |" in out and "GEMM bound" in out
    assert out.startswith("CPU: ") and "kernel" in out.splitlines()[0]  # which machine


@pytest.mark.parametrize("bidirectional", [False, True])
@needs_data(*dataset_files("names"))
def test_classify_trainer_steps_on_padded_names(bidirectional: bool) -> None:
    trainer = bench.make_classify_trainer("gru", 8, 3, bidirectional)
    assert (trainer.rc.task.name, trainer.rc.dataset.name) == ("classify", "names")
    before = {k: v.copy() for k, v in trainer.model.params.items()}
    assert int(trainer.train_step().tokens) == 3  # texts, not characters
    assert all(not np.array_equal(before[k], v) for k, v in trainer.model.params.items())


@pytest.mark.parametrize("cell", bench.CELL_ORDER)
def test_torch_classifier_reads_each_names_last_valid_state(cell: str) -> None:
    torch = pytest.importorskip("torch")
    from framework.studies.bench_refs import TorchClassifyLoop

    trainer = bench.make_classify_trainer(cell, 8, 4)
    corpus = trainer.corpus
    ref = TorchClassifyLoop(cell, trainer.vocab.size, 8, corpus.n_classes, trainer.feed, 1e-3,
                            5.0)
    batch = trainer.feed.batch(0)
    assert len(set(batch.lengths.tolist())) > 1  # the check needs padding
    with torch.no_grad():
        packed = ref.logits(batch.inputs, batch.lengths)
        # Unpacked: run the padded batch and pick each column's output at its last valid step.
        out, _ = ref.rnn(ref.eye[torch.from_numpy(batch.inputs)])
        last = out[torch.from_numpy(batch.lengths - 1), torch.arange(len(batch.lengths))]
        torch.testing.assert_close(packed, ref.out(last))
    weights = [p.detach().clone() for p in ref.params]
    assert ref.step() == 4
    assert all(not torch.equal(w, p) for w, p in zip(weights, ref.params, strict=True))


@needs_data(*dataset_files("names"))
def test_quick_classify_rows_print_a_table(capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["--quick", "--no-grid", "--no-torch", "--cells", "gru",
                       "--classify-hidden", "8", "--classify-batch", "2", "--rounds", "1",
                       "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "names classifier" in out
    assert "| gru | uni | 8 | 2 |" in out and "| gru | bi | 8 | 2 |" in out
