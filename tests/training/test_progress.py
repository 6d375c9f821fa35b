"""Progress you can see: a status line at a steady interval when the output is not a terminal,
and the run folder's train.log holding what the console showed."""

from __future__ import annotations

import io

from framework.training.progress import StatusLines
from tests.conftest import needs_data
from tests.helpers import cli


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_status_lines_come_at_the_interval_with_step_loss_speed_and_time_left():
    clock, out = FakeClock(), io.StringIO()
    lines = StatusLines(100, 0, every=10.0, stream=out, clock=clock)
    for _ in range(20):  # 20 steps in 5 s: under the interval, nothing yet
        clock.now += 0.25
        lines.update()
    assert out.getvalue() == ""
    lines.set_postfix(loss="1.234", chars_s="5,000")
    for _ in range(20):
        clock.now += 0.25
        lines.update()
    assert out.getvalue() == ("step 40/100 (40%), loss 1.234, chars/s 5,000, 0:00:10 elapsed, "
                              "0:00:15 left\n")


def test_a_resumed_run_counts_time_left_from_its_own_speed():
    clock, out = FakeClock(), io.StringIO()
    lines = StatusLines(1000, 900, every=1.0, stream=out, clock=clock)
    clock.now += 2.0
    lines.update(10)  # 10 steps in 2 s, 90 left
    assert out.getvalue().startswith("step 910/1000 (91%), 0:00:02 elapsed, 0:00:18 left")


def test_no_lines_at_interval_zero():
    clock, out = FakeClock(), io.StringIO()
    lines = StatusLines(10, 0, every=0, stream=out, clock=clock)
    for _ in range(5):
        clock.now += 100
        lines.update()
    assert out.getvalue() == ""


@needs_data("dinos.txt")
def test_a_run_without_a_terminal_reports_progress_and_keeps_its_console_in_train_log(tmp_path):
    proc = cli("framework", ["cell=rnn", "dataset=dinos", "cell.hidden_size=8", "train.steps=40",
                             "train.sample_every=20", "train.status_every=0.000001",
                             "mlflow.enabled=false"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert status and status[0].startswith("step 1/40 (2%)"), proc.stdout
    log = next(tmp_path.rglob("train.log")).read_text()
    assert "--- samples at step 20" in log and "done: 40 steps" in log

