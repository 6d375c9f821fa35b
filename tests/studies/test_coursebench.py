"""The course-recipe benchmark runs, and its two implementations print the same lines."""

from framework.studies.coursebench import main
from tests.conftest import needs_data


@needs_data("dinos.txt")
def test_course_model_and_course_style_loop_print_identical_blocks(capsys):
    assert main(["--iterations", "2001", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "printed output identical: True" in out
    assert out.startswith("CPU: ") and "BLAS: " in out.splitlines()[0]  # which machine
