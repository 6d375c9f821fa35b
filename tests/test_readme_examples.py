"""Every console block of README.md runs as printed, or is paired with why it runs elsewhere.

A console block is a fenced ``bash`` or ``console`` block, or an indented block of commands.
:data:`PAIRED` names, for the first line of each, the test that runs it or the reason it cannot
run here; :func:`test_every_console_block_is_paired` fails for a block nobody runs. The commands
run as the README prints them, in a fresh folder, with the placeholders it prints filled in (a
checkpoint path ``outputs/…``, ``<its MLflow run id>``, ``<model id>``) and a free port for a
server. Cheap blocks run in the default suite; the real trainings (the quickstart's 2000 steps,
the sweeps, the Sonnets model, the numba example) in the slow stage, shortened only where the
README itself says how (the sweeps' ``train.steps=100``). In the default suite the generation
example runs on one-step models of the same datasets.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from framework import ROOT
from tests.helpers import MAINS, run_cli

README = (ROOT / "README.md").read_text(encoding="utf-8")
VENV_BIN = Path(sys.executable).parent
PLACEHOLDER_CHECKPOINT = re.compile(r"outputs/\S*/checkpoints/latest\.npz")
DONE = re.compile(r"^done: .*; checkpoint (\S+)$", re.M)
RUN_ID = re.compile(r"^MLflow run ([0-9a-f]{32})\b", re.M)


@dataclass(frozen=True)
class Block:
    line: int  # where it starts in README.md
    text: str

    @property
    def first(self) -> str:
        return self.text.splitlines()[0]


def console_blocks() -> list[Block]:
    """The fenced bash/console blocks and the indented command blocks, in README order."""
    found = []
    fenced = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
    for match in fenced.finditer(README):
        if match.group(1) in ("bash", "console"):
            found.append(Block(README.count("\n", 0, match.start(2)) + 1, match.group(2)))
    outside = fenced.sub(lambda m: "\n" * m.group(0).count("\n"), README)
    for match in re.finditer(r"(?:^\n)((?:    \S.*\n)+)", outside, re.M):
        text = "\n".join(line[4:] for line in match.group(1).splitlines())
        if re.match(r"(\w+=\S+ )*(python|\.venv/bin/|mlflow|curl)", text):
            found.append(Block(outside.count("\n", 0, match.start(1)) + 1, text + "\n"))
    return sorted(found, key=lambda b: b.line)


# The first line of every console block -> the test that runs it, or why it is not run here.
PAIRED = {
    "# 1. set up and run the main job": "not here: it creates a virtualenv, installs rnnlab and "
        "runs this test suite; its training command is the quickstart's, run by "
        "test_quickstart_transcript (slow) and, offline, by tests/test_fresh_clone.py",
    "$ python -m framework cell=lstm dataset=dinos": "test_quickstart_transcript (slow)",
    "$ python -m framework cell=lstm dataset=dinos train.steps=4000 train.eval_every=100 "
    "train.early_stop.patience=4": "test_early_stop_example (slow)",
    "$ python -m framework cell=lstmm": "test_error_examples",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \\": "test_mlflow_ui_command (slow)",
    "MLflow UI (runs of this task": "test_ui_link_line (the line a run prints)",
    "MLFLOW_TRACKING_URI=sqlite:///mlflow.db mlflow models serve": "test_serving_example (slow)",
    "python -m framework.generate checkpoint=": "test_generation_example (one-step models), "
        "test_generation_example_as_printed (slow)",
    "$ python -m framework task=classify": "test_tasks_transcript",
    "$ python -m framework experiment=dates": "test_dates_transcript (slow)",
    "python -m framework -m cell=rnn,lstm,gru optimizer.lr": "test_sweeps_example (slow)",
    "export RNNLAB_PLUGIN_PATH=": "tests/test_readme_plugins.py (the task example's commands)",
    "RNNLAB_PLUGIN_PATH=~/rnnlab-plugins python -m framework cell=leaky":
        "tests/test_readme_plugins.py (the plugin examples' command)",
    ".venv/bin/python -m pytest -q ": "not here: the test suite and the linter themselves (the "
        "CI stages run them)",
    "python -m framework cell=lstm dataset=tinyshakespeare cell.backend=numba":
        "test_numba_example (slow)",
}


def paired_key(found: Block) -> str | None:
    """The key of PAIRED that names ``found``: the longest one its first line starts with."""
    keys = [key for key in PAIRED if found.first.startswith(key)]
    return max(keys, key=len) if keys else None


def block(first: str) -> Block:
    """The block whose first line starts with ``first`` (of several, the one PAIRED names so)."""
    found = [b for b in console_blocks() if b.first.startswith(first)]
    if len(found) > 1:
        found = [b for b in found if paired_key(b) == first]
    (one,) = found
    return one


def test_every_console_block_is_paired():
    blocks = console_blocks()
    for found in blocks:
        assert paired_key(found), f"README.md line {found.line}: {found.first!r} is paired " \
                                  f"with no test; add it to PAIRED"
    named = [paired_key(b) for b in blocks]
    assert len(set(named)) == len(named), "two README blocks are paired with one key"
    unused = [key for key in PAIRED if key not in named]
    assert not unused, f"PAIRED names blocks the README no longer has: {unused}"
    for key, where in PAIRED.items():  # every named test exists in this module or its file
        name = where.split(" ")[0]
        if name.startswith("test_"):
            assert name in globals(), (key, name)
        elif not where.startswith("not here: "):
            assert (ROOT / name).is_file(), (key, name)


# ---------------------------------------------------------------------------- running them
def commands(text: str) -> list[str]:
    """The command lines of a bash block (continuations joined, comments dropped) or of a
    console transcript (the ``$`` lines)."""
    lines = text.replace("\\\n", " ").splitlines()
    if any(line.startswith("$ ") for line in lines):
        return [line[2:] for line in lines if line.startswith("$ ")]
    return [line for line in lines if line.strip() and not line.startswith("#")]


def transcript(text: str) -> list[tuple[str, list[str]]]:
    """A console block as ``(command, printed lines)`` pairs; ``…`` marks lines left out."""
    pairs: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        elif pairs:
            pairs[-1][1].append(line)
    return pairs


def argv(command: str, fill: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """``(environment, argv)`` of a printed command line: leading VAR=value words are the
    environment, ``python``/``.venv/bin/python`` is this interpreter, ``mlflow`` the one beside
    it, and the placeholders in ``fill`` are replaced."""
    for placeholder, value in fill.items():
        command = command.replace(placeholder, value)
    words = shlex.split(command, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    program = words[0].removeprefix(".venv/bin/")
    if program in ("python", "python3"):
        words[0] = sys.executable
    elif (VENV_BIN / program).is_file():  # mlflow, pytest, ruff: this environment's
        words[0] = str(VENV_BIN / program)
    return env, words


def run(command: str, cwd: Path, fill: dict[str, str] | None = None, timeout: float = 600,
        ) -> subprocess.CompletedProcess:
    env, words = argv(command, fill or {})
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", **env}
    full.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return subprocess.run(words, cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=timeout)


def forget_relative_stores() -> None:
    """The README's commands use the default store, ``sqlite:///mlflow.db``, relative to the
    folder they run in; MLflow keeps each URI's store and database engine for the life of the
    process, which a command run in this process must not inherit from the one before."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    _tracking_store_registry._get_store_with_resolved_uri.cache_clear()
    for uri in [u for u in SqlAlchemyStore._engine_map if re.match(r"sqlite:///[^/]", u)]:
        SqlAlchemyStore._engine_map.pop(uri).dispose()


def run_here(command: str, cwd: Path, fill: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess:
    """A printed ``python -m framework...`` command run in this process (the default suite's
    way: the same ``main()``, arguments and output, without starting Python again); any other
    command in its own process."""
    env, words = argv(command, fill or {})
    if words[0] == sys.executable and words[1:2] == ["-m"] and words[2] in MAINS:
        forget_relative_stores()
        return run_cli(words[2], words[3:], cwd, env=env)
    return run(command, cwd, fill)


def checked(command: str, cwd: Path, fill: dict[str, str] | None = None,
            timeout: float = 600, here: bool = False) -> subprocess.CompletedProcess:
    proc = run_here(command, cwd, fill) if here else run(command, cwd, fill, timeout)
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    return proc


def checkpoint_of(proc: subprocess.CompletedProcess) -> str:
    match = DONE.search(proc.stdout)
    assert match, proc.stdout[-2000:]
    return match.group(1)


def run_id_of(proc: subprocess.CompletedProcess) -> str:
    match = RUN_ID.search(proc.stdout + proc.stderr)
    assert match, (proc.stdout + proc.stderr)[-2000:]
    return match.group(1)


def same_lines(printed: list[str], got: list[str]) -> None:
    """The printed lines, in order, among the lines the command printed; a printed ``…`` line
    stands for any number of lines, and the figures a machine changes (throughput, dates in
    paths, run ids) are compared by shape."""
    def pattern(line: str) -> str:
        text = re.escape(line)
        text = re.sub(r"\d[\d,]*(?:\\ )(chars|texts|values|names|target\\ tokens)/s",
                      r"[\\d,]+ \1/s", text)
        text = re.sub(r"outputs/[^ ;]*", r"\\S+", text)
        return text.replace("…", ".*")

    position = 0
    for line in printed:
        if line == "…":
            continue
        regex = re.compile(pattern(line))
        while position < len(got) and not regex.fullmatch(got[position]):
            position += 1
        assert position < len(got), f"printed line not found in order: {line!r}\n" + \
            "\n".join(got)
        position += 1


# ---------------------------------------------------------------------------- default suite
def test_error_examples(tmp_path):
    for command, printed in transcript(block("$ python -m framework cell=lstmm").text):
        proc = run_here(command, tmp_path)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.splitlines() == printed, command
    assert not (tmp_path / "mlflow.db").exists()  # refused before any MLflow run


def test_ui_link_line(tmp_path):
    """The line every run ends with: a one-step run of the default task in a fresh store."""
    (line,) = block("MLflow UI (runs of this task").text.splitlines()
    proc = checked("python -m framework train.steps=1 train.sample_every=0", tmp_path,
                   here=True)
    assert line in proc.stdout.splitlines(), proc.stdout


def test_tasks_transcript(tmp_path):
    """Both trainings as printed (40 and 200 steps), their predictions, their printed lines."""
    checkpoint = None
    for command, printed in transcript(block("$ python -m framework task=classify").text):
        fill = {} if checkpoint is None else {m: checkpoint for m in
                                              set(PLACEHOLDER_CHECKPOINT.findall(command))}
        proc = checked(command, tmp_path, fill, here=True)
        same_lines(printed, proc.stdout.splitlines())
        if "framework.predict" not in command:
            checkpoint = checkpoint_of(proc)


def test_generation_example(tmp_path):
    """The printed generate commands on one-step models of the datasets they are for."""
    first, training, second = commands(block("python -m framework.generate checkpoint=").text)
    assert training.startswith("python -m framework dataset=sonnets ")
    names = checked("python -m framework dataset=dinos train.steps=1 train.sample_every=0 "
                    "mlflow.enabled=false", tmp_path, here=True)
    checkpoint = checkpoint_of(names)
    printed = checked(first, tmp_path, {PLACEHOLDER_CHECKPOINT.search(first).group(0):
                                        checkpoint}, here=True)
    assert len(printed.stdout.splitlines()) == 10  # num_samples=10 names, one per line
    text = checked(f"{training} train.steps=1 train.sample_every=0", tmp_path, here=True)
    sample = checked(second, tmp_path, {"<its MLflow run id>": run_id_of(text)}, here=True)
    assert sample.stdout.startswith("forsooth this maketh no sense")
    # The same prompt on the names model is the one-line error the README describes.
    refused = run_here(second.replace("run_id=<its MLflow run id>",
                                      f"checkpoint={checkpoint}"), tmp_path)
    assert refused.returncode == 2 and "not in the vocabulary" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1


# ---------------------------------------------------------------------------- slow stage
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1.0)
    pytest.fail(f"{url} not answering after {seconds:.0f} s:\n{log.read_text()[-3000:]}")


def server(command: str, cwd: Path, port: int, fill: dict[str, str]) -> subprocess.Popen:
    """A printed server command, started in its own session on ``port``."""
    env, words = argv(command, fill)
    for flag in ("--port", "-p"):
        if flag in words:
            words[words.index(flag) + 1] = str(port)
    log = open(cwd / f"server-{port}.log", "w")  # noqa: SIM115 - the process keeps it open
    # As in the shell the README's commands run in, with the virtualenv activated: its bin/ on
    # PATH (mlflow models serve starts uvicorn from there).
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.Popen(words, cwd=cwd,
                            env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT), **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:  # it already ended (its log is in the failure message)
        return
    os.killpg(proc.pid, signal.SIGTERM)  # the server's own session, started above
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, list[tuple[str, subprocess.CompletedProcess]]]:
    """The quickstart transcript's commands, run as printed in a fresh folder."""
    work = tmp_path_factory.mktemp("quickstart")
    ran, checkpoint = [], None
    for command, _ in transcript(block("$ python -m framework cell=lstm dataset=dinos").text):
        fill = {m: checkpoint for m in set(PLACEHOLDER_CHECKPOINT.findall(command))}
        proc = checked(command, work, fill, timeout=3600)
        ran.append((command, proc))
        if command.startswith("python -m framework "):
            checkpoint = checkpoint_of(proc)
    return work, ran


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_quickstart_transcript(quickstart):
    _, ran = quickstart
    (train, trained), (generate, samples), (compare, table) = transcript(
        block("$ python -m framework cell=lstm dataset=dinos").text)
    assert [command for command, _ in ran] == [train, generate, compare]
    # Training: the seeded figures and the lines that name what was made, as printed.
    kept = [line for line in trained if line.startswith(("done:", "MLflow UI"))]
    same_lines(kept, ran[0][1].stdout.splitlines())
    files = next(line for line in trained if line.startswith("files in "))
    made = next(line for line in ran[0][1].stdout.splitlines() if line.startswith("files in "))
    assert made.split(": ", 1)[1] == files.split(": ", 1)[1]
    assert len(ran[1][1].stdout.splitlines()) == len(samples)  # unseeded: 5 names
    # The compare table: its columns, and the run ranked with the printed figures.
    got = ran[2][1].stdout.splitlines()
    assert got[0] == table[0] and got[1].split() == table[1].split()
    assert re.fullmatch(r"\s+1\s+\S+\s+[0-9a-f]{32}\s+FINISHED\s+1\.7071\s+2\.4628\s+[\d,]+",
                        got[3]), got


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_serving_example(quickstart):
    work, ran = quickstart
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    run_id = run_id_of(ran[0][1])
    (model,) = [m for m in client.search_logged_models(experiment_ids=["1"])
                if m.source_run_id == run_id]  # the quickstart's model
    serve, *request = commands(block("MLFLOW_TRACKING_URI=sqlite:///mlflow.db").text)
    port = free_port()
    proc = server(serve, work, port, {"<model id>": model.model_id})
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", proc, work / f"server-{port}.log")
        (curl,) = request
        answer = checked(curl.replace("5001", str(port)), work)
    finally:
        stop(proc)
    printed = block("MLFLOW_TRACKING_URI=sqlite:///mlflow.db").text.splitlines()[-1]
    assert answer.stdout.strip() == printed.removeprefix("# ")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_mlflow_ui_command(quickstart):
    work, _ = quickstart
    (command,) = commands(block("MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false").text)
    port = free_port()
    proc = server(command, work, port, {})
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, work / f"server-{port}.log")
        link = block("MLflow UI (runs of this task").text.split(": ", 1)[1].strip()
        with urllib.request.urlopen(link.replace(":5000", f":{port}"), timeout=30) as page:
            assert page.status == 200
    finally:
        stop(proc)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_generation_example_as_printed(quickstart):
    work, ran = quickstart
    checkpoint = checkpoint_of(ran[0][1])
    first, training, second = commands(block("python -m framework.generate checkpoint=").text)
    names = checked(first, work, {PLACEHOLDER_CHECKPOINT.search(first).group(0): checkpoint})
    assert len(names.stdout.splitlines()) == 10
    text = checked(training, work, timeout=3600)
    sample = checked(second, work, {"<its MLflow run id>": run_id_of(text)})
    assert sample.stdout.startswith("forsooth this maketh no sense")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sweeps_example(tmp_path):
    shorter = "train.steps=100"
    assert f"add\n`{shorter}` to any of these commands" in README  # the README's own shortening
    *trainings, compare = commands(block("python -m framework -m cell=rnn,lstm,gru").text)
    for command in trainings:
        checked(f"{command.split('#')[0].strip()} {shorter}", tmp_path, timeout=3600)
    table = checked(compare, tmp_path).stdout
    assert table.startswith("experiment 'rnnlab'") and "FINISHED" in table, table


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_numba_example(tmp_path):
    pytest.importorskip("numba", reason="the example needs the [fast] extra")
    (command,) = commands(block("python -m framework cell=lstm dataset=tinyshakespeare").text)
    proc = checked(command, tmp_path, timeout=3600)
    assert DONE.search(proc.stdout), proc.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_dates_transcript(tmp_path):
    """The dates preset as printed (3000 steps), then its predictions by run id and checkpoint."""
    pytest.importorskip("faker", reason="the dates dataset needs the [dates] extra")
    fill: dict[str, str] = {}
    for command, printed in transcript(block("$ python -m framework experiment=dates").text):
        proc = checked(command, tmp_path, fill, timeout=3600)
        same_lines(printed, proc.stdout.splitlines())
        if "framework.predict" not in command:
            fill = {"<run id>": run_id_of(proc),
                    "outputs/…/checkpoints/latest.npz": checkpoint_of(proc)}


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_early_stop_example(tmp_path):
    """The early-stopping transcript as printed: where it stops, the best it restores."""
    first = "$ python -m framework cell=lstm dataset=dinos train.steps=4000 train.eval_every=100 " \
            "train.early_stop.patience=4"
    for command, printed in transcript(block(first).text):
        proc = checked(command, tmp_path, timeout=3600)
        same_lines(printed, proc.stdout.splitlines())
