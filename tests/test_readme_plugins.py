"""The README's plugin examples, run exactly as printed.

Every ``python`` block of "Writing a cell", "Writing a dataset", "Writing a task" and "Other
plugins" whose first line names a file (``# leaky.py: ...``) is written to a folder named in
RNNLAB_PLUGIN_PATH, and the section's printed command trains with all of them; the cell is
gradient-checked, and its missing course hook and a bad option are the one-line errors the README
prints.  The task's printed commands train, resume, predict and compare with it, and its
checkpoint is served by the pyfunc model (in-process; ``mlflow models serve`` in a slow test).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from framework import ROOT
from framework.plugins import PATH_ENV
from framework.registry import CELLS, TASKS
from tests.conftest import needs_data, require_run_data
from tests.helpers import QUICK, cli, plugin_path, run_cli

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
    assert sorted(plugin_files()) == ["leaky.py", "lengthclass.py", "min_p.py", "mytext.py",
                                      "step_decay.py"]
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
@needs_data("dinos.txt")
def test_the_printed_errors(plugin_dir, tmp_path, args, error):
    assert error.removeprefix("rnnlab: error: ") in " ".join(section_text().split())
    with plugin_path(plugin_dir):
        proc = run_cli("framework", [*QUICK, "cell=leaky", *args], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == error, proc.stderr


def test_the_cell_passes_the_checks_every_cell_gets(plugin_dir):
    """The checks the test suite runs on every cell of a plugin folder, on the README's."""
    from tests.nn import test_cells_gradcheck as gradcheck
    from tests.nn import test_model as model

    with plugin_path(plugin_dir):
        assert CELLS.get("leaky").name == "leaky"
        for shape in gradcheck.CELL_SHAPES:
            gradcheck.test_cell_backward_dense("leaky", shape)
        for layers in (1, 2):
            gradcheck.test_charrnn_loss_grads("leaky", layers, "base")
        model.test_seeded_runs_are_bit_identical("leaky")
        for dtype in ("float32", "float64"):
            model.test_dtype_is_preserved_end_to_end("leaky", dtype)
        model.test_state_carry_model_level("leaky")


# ------------------------------------------------------------------------------ the task
TASK_RUN = ["train.steps=12", "train.eval_every=6", "train.checkpoint_every=6",
            "train.log_every=3", "train.batch_size=8"]


def task_commands() -> dict[str, list[str]]:
    """The "Writing a task" section's printed commands, by module."""
    start = README.index("## Writing a task")
    text = README[start:README.index("\n## ", start + 3)]
    commands = {}
    for code in re.findall(r"^```bash\n(.*?)^```$", text, re.S | re.M):
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["python", "-m"]:
                commands[words[2]] = words[3:]
    return commands


@pytest.fixture(scope="module")
def task_run(plugin_dir, tmp_path_factory) -> tuple[Path, str, str, Path]:
    """The printed training command, shortened: (work dir, store URI, run id, checkpoint)."""
    work = tmp_path_factory.mktemp("task")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    args = task_commands()["framework"]
    assert {"task=lengthclass", "dataset=dinos"} <= set(args)
    require_run_data(args)
    proc = cli("framework", [*args, *TASK_RUN, f"mlflow.tracking_uri={uri}"], work,
               env={PATH_ENV: str(plugin_dir)})
    assert proc.returncode == 0, proc.stderr
    done = re.search(r"^done: 12 steps, val loss [0-9.]+, [0-9,]+ names/s; checkpoint (\S+)$",
                     proc.stdout, re.M)
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", proc.stdout + proc.stderr)
    assert done and run_id, proc.stdout + proc.stderr
    return work, uri, run_id.group(1), Path(done.group(1))


def test_the_task_example_resumes_predicts_and_is_compared(plugin_dir, task_run):
    work, uri, run_id, checkpoint = task_run
    with plugin_path(plugin_dir):
        resumed = run_cli("framework", [*task_commands()["framework"], *TASK_RUN,
                                        "train.steps=18", "mlflow.enabled=false",
                                        f"resume={checkpoint}"], work)
        assert resumed.returncode == 0, resumed.stderr
        assert f"resumed from {checkpoint} at step 12" in resumed.stdout
        assert "done: 18 steps" in resumed.stdout

        args = [f"checkpoint={checkpoint}" if a.startswith("checkpoint=") else a
                for a in task_commands()["framework.predict"]]
        predicted = run_cli("framework.predict", args, work)
        assert predicted.returncode == 0, predicted.stderr
        lines = predicted.stdout.splitlines()
        assert [line.split(":")[0] for line in lines] == ["rex", "tyrannosaurus"]
        assert all(re.fullmatch(r"\w+: (short|long) [01]\.\d{3}", line) for line in lines), lines
        bad = run_cli("framework.predict", [f"checkpoint={checkpoint}", "text=Rex"], work)
        assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
            "rnnlab: error: text contains 1 character(s) not in the vocabulary: 'R'; use only "
            "the model's 27 characters"]

        (experiment,) = task_commands()["framework.compare"]
        compared = run_cli("framework.compare", [experiment, "--tracking-uri", uri], work)
        assert compared.returncode == 0, compared.stderr
        header = compared.stdout.splitlines()[1].split()
        assert header[-3:] == ["val_accuracy", "val_loss", "names_per_sec"], compared.stdout
        assert run_id in compared.stdout


def test_the_task_example_is_served_by_the_pyfunc_model(plugin_dir, task_run, tmp_path):
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from framework.tracking.pyfunc import save_pyfunc_model

    _, _, _, checkpoint = task_run
    with plugin_path(plugin_dir):
        assert TASKS.get("lengthclass").noun == "length classifier"
        save_pyfunc_model(tmp_path / "model", checkpoint)
        model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
        answers = model.predict(pd.DataFrame({"text": ["rex", "tyrannosaurus"]}))
        assert all(re.fullmatch(r"(short|long) [01]\.\d{3}", a) for a in answers), answers
        assert model.metadata.get_input_schema().input_names() == ["text"]
        with pytest.raises(MlflowException, match="not in the vocabulary"):
            model.predict(pd.DataFrame({"text": ["Rex"]}))


@pytest.mark.slow
def test_the_task_example_is_served_by_mlflow_models_serve(plugin_dir, task_run):
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    work, uri, run_id, _ = task_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, PATH_ENV: str(plugin_dir),
           "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)  # the model carries its own copy of framework/
    log_path = work / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(venv_bin / "mlflow"), "models", "serve", "-m", f"runs:/{run_id}/model",
             "--env-manager", "local", "-p", str(port), "--host", "127.0.0.1"],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            body = json.dumps({"dataframe_records": [{"text": "rex"}]}).encode()
            answer, deadline = None, time.monotonic() + 240
            while answer is None and time.monotonic() < deadline and proc.poll() is None:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                                 data=body,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        answer = json.loads(response.read())
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.5)
            assert answer is not None, log_path.read_text()[-3000:]
            (prediction,) = answer["predictions"]
            assert re.fullmatch(r"(short|long) [01]\.\d{3}", prediction), answer
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the server's own session, started above
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
