"""The README's plugin examples, run exactly as printed.

Every ``python`` block of "Writing a cell", "Writing a dataset" and "Other plugins" whose first
line names a file (``# leaky.py: ...``) is written to a folder named in RNNLAB_PLUGIN_PATH, and
the section's printed command trains with all of them; the cell is gradient-checked, and its
missing course hook and a bad option are the one-line errors the README prints.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from framework import ROOT
from framework.plugins import PATH_ENV, load_folder
from framework.registry import CELLS
from tests.helpers import QUICK, cli, isolated_registries

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTIONS = ("## Writing a cell", "## Writing a dataset", "## Other plugins")
FILE_LINE = re.compile(r"^# (\w+\.py)\b")


def section_text() -> str:
    start = README.index(SECTIONS[0])
    end = README.index("\n## ", README.index(SECTIONS[-1]) + 3)
    return README[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section_text(), re.S | re.M)


def plugin_files() -> dict[str, str]:
    files = {}
    for code in blocks("python"):
        match = FILE_LINE.match(code)
        if match:
            files[match.group(1)] = code
    return files


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme") / "rnnlab-plugins"
    folder.mkdir()
    for name, code in plugin_files().items():
        (folder / name).write_text(code, encoding="utf-8")
    return folder


def the_command(plugin_dir: Path, text_file: Path) -> tuple[dict[str, str], list[str]]:
    """The README's `RNNLAB_PLUGIN_PATH=... python -m framework ...` line, pointed at the
    written files."""
    (line,) = [line for code in blocks("bash") for line in code.splitlines()
               if line.startswith(f"{PATH_ENV}=")]
    words = shlex.split(line)
    assert words[1:4] == ["python", "-m", "framework"], line
    args = [f"dataset.path={text_file}" if w.startswith("dataset.path=") else w
            for w in words[4:]]
    return {PATH_ENV: str(plugin_dir)}, args


def test_the_examples_are_one_file_per_kind():
    assert sorted(plugin_files()) == ["leaky.py", "min_p.py", "mytext.py", "step_decay.py"]
    for name, code in plugin_files().items():  # each registers the plugin its file is named for
        assert re.search(rf"\.register\(\"{name[:-3]}\"", code), name


def test_the_printed_command_trains_with_every_example(plugin_dir, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text(README, encoding="utf-8")  # any text will do
    env, args = the_command(plugin_dir, text)
    assert {"cell=leaky", "dataset=mytext", "sampler=min_p",
            "train.lr_schedule=step_decay"} <= set(args)
    proc = cli("framework", [*args, *QUICK, "train.decay_every=4"], tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "done: 12 steps" in proc.stdout and "--- samples at step 6" in proc.stdout
    helped = cli("framework", ["--help"], tmp_path, env=env, timeout=60)
    for line in ("cell: gru, leaky, lstm, rnn", "sampler: categorical, greedy, min_p",
                 "train.lr_schedule: constant, cosine, step_decay"):
        assert line in helped.stdout, helped.stdout


@pytest.mark.parametrize("args, error", [
    (["cell.init=course"], "rnnlab: error: cell 'leaky' has no course initialisation: it does "
                           "not define the optional hook course_blocks(input_size, rng); use "
                           "cell.init=xavier"),
    (["cell.leak=2"], "rnnlab: error: cell 'leaky': cell.leak must be in (0, 1], got 2.0"),
])
def test_the_printed_errors(plugin_dir, tmp_path, args, error):
    assert error.removeprefix("rnnlab: error: ") in " ".join(section_text().split())
    env = {PATH_ENV: str(plugin_dir)}
    proc = cli("framework", [*QUICK, "cell=leaky", *args], tmp_path, env=env)
    assert proc.returncode == 2 and proc.stderr.strip() == error, proc.stderr


def test_the_cell_passes_the_checks_every_cell_gets(plugin_dir):
    """The checks the test suite runs on every cell of a plugin folder, on the README's."""
    from tests.nn import test_cells_gradcheck as gradcheck
    from tests.nn import test_model as model

    with isolated_registries():
        load_folder(plugin_dir)
        assert CELLS.get("leaky").name == "leaky"
        for shape in gradcheck.CELL_SHAPES:
            gradcheck.test_cell_backward_dense("leaky", shape)
        for layers in (1, 2):
            gradcheck.test_charrnn_loss_grads("leaky", layers, "base")
        model.test_seeded_runs_are_bit_identical("leaky")
        for dtype in ("float32", "float64"):
            model.test_dtype_is_preserved_end_to_end("leaky", dtype)
        model.test_state_carry_model_level("leaky")
