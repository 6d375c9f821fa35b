"""Every command checks its own arguments with one-line errors, and says what a run without
training or without validation means (instead of printing nan)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from framework.errors import ConfigError
from tests.conftest import needs_data
from tests.helpers import QUICK, compose_config, run_cli, run_config
from tests.tracking.test_pyfunc import make_checkpoint


def _run(module: str, argv: list[str]) -> tuple[int, list[str], str]:
    """``python -m module argv`` in-process: (exit status, stderr lines, stdout)."""
    proc = run_cli(module, argv)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()], proc.stdout


def _one_line(code: int, lines: list[str], *needles: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("gen") / "c.npz", hidden_size=4, num_layers=1)


# --------------------------------------------------------------------------- framework.generate
@pytest.mark.parametrize("args, needles", [
    (["length=abc"], ["length: Value 'abc' of type 'str' could not be converted to Integer"]),
    (["length=-1"], ["length must be in [1, 100000], got -1"]),
    (["length=0"], ["length must be in [1, 100000], got 0"]),
    (["length=1.5"], ["length: Value '1.5'"]),
    (["length=100000000"], ["length must be in [1, 100000]"]),
    (["seed=-1"], ["seed must be null or an integer in [0, 2**63 - 1], got -1"]),
    (["seed=abc"], ["seed: Value 'abc'"]),
    (["seed=99999999999999999999"], ["seed must be null or an integer in [0, 2**63 - 1]"]),
    (["num_samples=0"], ["num_samples must be in [1, 10000], got 0"]),
    (["num_samples=abc"], ["num_samples: Value 'abc'"]),
    (["window=0"], ["window must be >= 1 or null, got 0"]),
    (["prompt=${nope}"], ["prompt: Interpolation key 'nope' not found"]),
    (["temperature=0"], ["unknown config key 'temperature'", "did you mean 'sampler.temperature'"]),
    (["sampler.temperature=0"], ["sampler 'categorical' has no option 'temperature'",
                                 "an option of temperature"]),
    (["sampler=temperature", "sampler.temperature=0"], ["must be a finite number > 0"]),
    (["sampler=top_k", "sampler.k=0"], ["sampler.k"]),
    (["lenght=5"], ["unknown config key 'lenght'", "did you mean 'length'?"]),
])
def test_generate_checks_every_option_in_one_line(checkpoint, args, needles):
    code, lines, out = _run("framework.generate", [f"checkpoint={checkpoint}", *args])
    _one_line(code, lines, *needles)
    assert out == ""


def test_generate_accepts_the_edges(checkpoint):
    code, lines, out = _run("framework.generate", [f"checkpoint={checkpoint}", "length=1",
                                                   "num_samples=1", "seed=0", "prompt=null"])
    assert (code, lines) == (0, []) and len(out.splitlines()) == 1


# --------------------------------------------------------------------------- argparse commands
@pytest.mark.parametrize("module, argv, needle", [
    ("framework.compare", [], "the following arguments are required: target"),
    ("framework.compare", ["x", "--format", "html"], "argument --format: invalid choice"),
    ("framework.compare", ["x", "--bogus"], "unrecognized arguments: --bogus"),
    ("framework.bench", ["--threads", "0"], "argument --threads: must be >= 1, got 0"),
    ("framework.bench", ["--threads", "abc"], "expected an integer, got 'abc'"),
    ("framework.bench", ["--hidden", "8", "-3"], "argument --hidden: must be >= 1"),
    ("framework.bench", ["--seq", "0"], "argument --seq: must be >= 1"),
    ("framework.bench", ["--rounds", "0"], "argument --rounds: must be >= 1"),
    ("framework.bench", ["--cells", "lstmm"], "argument --cells: invalid choice"),
    ("framework.coursebench", ["--iterations", "-5"], "--iterations: must be >= 1"),
    ("framework.coursebench", ["--rounds", "0"], "argument --rounds: must be >= 1"),
    ("framework.coursebench", ["--bogus"], "unrecognized arguments: --bogus"),
])
def test_argparse_errors_are_one_line_exit_2(module, argv, needle):
    code, lines, out = _run(module, argv)
    _one_line(code, lines, needle, "(--help lists the options)")
    assert out == ""  # no usage block


@pytest.mark.parametrize("argv, needle", [
    (["train.stepz=1"], "unknown config key 'train.stepz'; did you mean 'train.steps'?"),
    (["probe.length=abc"], "probe.length must be an integer >= 2, got 'abc'"),
    (["probe.length=0"], "probe.length must be an integer >= 2, got 0"),
    (["probe.batch=-1"], "probe.batch must be an integer >= 1, got -1"),
    (["cell.hidden_size=0"], "hidden_size must be > 0"),
    (["foo"], "Error parsing override 'foo'"),
])
def test_vanishing_study_arguments_are_one_line(argv, needle):
    code, lines, _ = _run("framework.vanishing", argv)
    _one_line(code, lines, needle)


# --------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("overrides, needle", [
    (["cell.init=course", "seed=4294967296"], "too large for cell.init=course"),
    (["experiment=dinosaurus_island", "seed=4294967296"], "too large for cell.init=course"),
    (["train.feed=example", "seed=4294967296"], "too large for train.feed=example"),
    (["train.shuffle_seed=4294967296"], "train.shuffle_seed must be in [0, 2**32)"),
    (["train.shuffle_seed=-1"], "train.shuffle_seed must be in [0, 2**32)"),
])
def test_seeds_a_legacy_generator_cannot_take_are_refused_up_front(overrides, needle):
    with pytest.raises(ConfigError) as info:
        run_config(overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_seeds_that_fit_are_accepted():
    assert run_config(["cell.init=course", f"seed={2**32 - 1}"]).seed == 2**32 - 1
    assert run_config(["train.feed=example", "seed=4294967296",
                       "train.shuffle_seed=0"]).seed == 2**32
    assert run_config([f"seed={2**70}"]).seed == 2**70  # the default init takes any seed


# --------------------------------------------------------------------------- nothing to report
def test_done_line_says_what_no_training_and_no_validation_mean():
    from framework.cli.train import done_line
    from framework.tasks.lm import LanguageModelTask

    result = SimpleNamespace(steps=20, final_val_loss=math.nan, chars_per_sec=1000.0,
                             final_checkpoint="c/latest.npz", final_metrics={})
    task = LanguageModelTask()

    def line(overrides: list[str]) -> str:
        return done_line(run_config(overrides), result, task, None)

    assert line(["train.steps=0"]) == (
        "done: train.steps=0, nothing was trained and no checkpoint was written")
    assert "no validation (dataset.val_fraction=0)" in line(["dataset.val_fraction=0"])
    assert "nan" not in line(["dataset.val_fraction=0"])
    assert "no validation (the validation split gave no batch)" in line([])
    result.final_metrics = {"val_loss": math.log(2)}
    assert "val loss 0.6931 nats/char (1.0000 bits/char), 1,000 chars/s" in line([])


@needs_data("dinos.txt")
def test_real_runs_without_training_or_validation_say_so(tmp_path, monkeypatch, capsys):
    from framework.cli import train as app

    monkeypatch.chdir(tmp_path)
    assert math.isnan(app.run(compose_config([*QUICK, "train.steps=0"])))
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "done: train.steps=0, nothing was trained and no checkpoint was written")
    value = app.run(compose_config([*QUICK, "dataset.val_fraction=0"]))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert math.isnan(value) and "no validation (dataset.val_fraction=0)" in last
    assert "nan" not in last and "checkpoints/latest.npz" in last


def _job(tmp_path, num: int, value: float, error: str | None):
    """Run the sweep callback's job hooks around one job that returned ``value``."""
    from hydra.core.utils import JobReturn, JobStatus

    from framework.sweeps import nested_runs as sweep

    out = tmp_path / str(num)
    (out / ".hydra").mkdir(parents=True)
    (out / ".hydra" / "overrides.yaml").write_text("[]\n")
    config = OmegaConf.create({"hydra": {
        "mode": "MULTIRUN", "sweep": {"dir": str(tmp_path)}, "job": {"num": num},
        "overrides": {"task": []}, "runtime": {"output_dir": str(out)}}})
    callback = sweep.SweepCallback()
    callback.on_job_start(config)
    if error is not None:
        sweep.mark_job_failed(error)
    ret = JobReturn()
    ret.status, ret._return_value = JobStatus.COMPLETED, value
    callback.on_job_end(config, ret)
    return json.loads((out / sweep.JOB_FILE).read_text())


def test_a_sweep_does_not_count_jobs_without_validation_as_failed(tmp_path):
    from framework.sweeps.outcome import Jobs, count_jobs

    assert _job(tmp_path, 0, math.nan, None)["failed"] is False  # val_fraction=0 / steps=0
    assert _job(tmp_path, 1, 1.5, None)["failed"] is False
    failed = _job(tmp_path, 2, math.nan, "cell.hidden_size must be > 0")
    assert failed["failed"] is True and failed["error"] == "cell.hidden_size must be > 0"
    assert _job(tmp_path, 3, math.nan, None)["failed"] is False  # the mark does not leak
    assert count_jobs(tmp_path) == Jobs(4, 1, "cell.hidden_size must be > 0")


def test_vanishing_study_help_is_usage_not_a_parse_error(capsys):
    from framework.studies.vanishing import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: python -m framework.vanishing" in out and "Lexer" not in out


@pytest.mark.parametrize("module, needle", [
    ("framework.generate", "sample text (or music) from a trained model"),
    ("framework.predict", "what a trained classifier or forecaster says"),
])
def test_generate_and_predict_help_say_what_the_command_does(tmp_path, module, needle):
    proc = run_cli(module, ["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert needle in proc.stdout and f"Usage: python -m {module}" in proc.stdout
    assert "powered by Hydra" not in proc.stdout
