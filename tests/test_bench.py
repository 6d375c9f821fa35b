"""The benchmark's code paths run on a tiny configuration (no timing assertions: performance
claims come from `python -m framework.bench`, never from timed unit tests)."""

from __future__ import annotations

import numpy as np
import pytest

from framework.studies import bench
from framework.studies.bench_refs import CourseLoop, course_clip_and_adam, gemm_step
from tests.conftest import needs_data


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
                       "--seq", "4", "--rounds", "1", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "BLAS" in out and "| gru | 8 | 2 |" in out and "GEMM bound" in out
    assert out.startswith("CPU: ") and "kernel" in out.splitlines()[0]  # which machine
