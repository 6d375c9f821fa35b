"""Resources are checked before they are spent: memory, dataset files, generated lengths."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.data.files import fetch as files
from framework.errors import ConfigError, DataError
from framework.training import resources
from framework.training.resources import MemoryEstimate, check_fits, training_estimate
from tests.conftest import needs_data
from tests.helpers import QUICK, cli, run_config

GiB = 2**30


# --------------------------------------------------------------------------- memory
def _estimate(tmp_path: Path, *overrides: str) -> MemoryEstimate:
    """The training estimate of a small LSTM language model on a text file."""
    from framework.training.trainer import Reporter, Trainer

    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    rc = run_config([*QUICK, "dataset=textfile", f"dataset.path={text}", "cell=lstm",
                     "cell.hidden_size=32", "model.num_layers=2", *overrides])
    trainer = Trainer(rc, out_dir=tmp_path / "out", reporter=Reporter(None, print))
    return training_estimate(rc, trainer.corpus, trainer.feed.kind)


def test_the_estimate_counts_every_part_and_scales_with_the_batch(tmp_path):
    one = _estimate(tmp_path, "train.batch_size=8")
    two = _estimate(tmp_path, "train.batch_size=16")
    assert one.gradients == one.parameters and one.optimizer == 3 * one.parameters  # adam
    assert two.activations == 2 * one.activations and two.parameters == one.parameters
    sgd = _estimate(tmp_path, "train.batch_size=8", "optimizer=sgd", "dtype=float64")
    assert sgd.optimizer == sgd.parameters == 2 * one.parameters  # the scratch copy, float64


def test_a_config_that_does_not_fit_is_refused_before_the_model_exists(monkeypatch, tmp_path):
    from framework.nn.models import language_model
    from framework.training.trainer import Reporter, Trainer

    built = []
    monkeypatch.setattr(language_model.CharRNN, "init_params",
                        lambda self, rng: built.append(self) or {})
    monkeypatch.setattr(resources, "available_memory", lambda: (GiB, "a test's 1 GiB"))
    text = tmp_path / "names.txt"
    text.write_text("abcdefghijklmnopqrstuvwxyz\n" * 20)
    rc = run_config([*QUICK, "dataset=textfile", f"dataset.path={text}", "dataset.mode=lines",
                     "cell.hidden_size=20000"])  # 4 * 20000 * 20027 floats: 6.4 GB
    with pytest.raises(ConfigError) as info:
        Trainer(rc, out_dir=tmp_path, reporter=Reporter(None, print))
    message = str(info.value)
    assert "\n" not in message and not built
    assert "needs about" in message and "1.0 GiB is available (a test's 1 GiB)" in message
    assert "parameters 6.0 GiB" in message and "lower cell.hidden_size" in message


def test_a_forecaster_that_does_not_fit_is_refused_before_the_model_exists(monkeypatch,
                                                                         tmp_path):
    """Series models have no vocabulary; they are sized from their features."""
    from framework.nn.models import many_to_one
    from framework.training.trainer import Reporter, Trainer

    built = []
    monkeypatch.setattr(many_to_one.SequenceForecaster, "init_params",
                        lambda self, rng: built.append(self) or {})
    series = tmp_path / "series.csv"
    series.write_text("value\n" + "".join(f"{i % 7}\n" for i in range(200)))
    rc = run_config([*QUICK, "task=forecast", "dataset=csv_series", f"dataset.path={series}",
                     "dataset.column=value", "cell.hidden_size=300000"])
    with pytest.raises(ConfigError) as info:
        Trainer(rc, out_dir=tmp_path, reporter=Reporter(None, print))
    message = str(info.value)
    assert "\n" not in message and not built
    assert "needs about" in message and "lower cell.hidden_size" in message


def test_the_estimate_stays_below_what_a_step_really_allocates(tmp_path):
    """The estimate errs low, so a config it refuses does not fit (tracemalloc sees NumPy)."""
    import tracemalloc

    from framework.training.trainer import Reporter, Trainer

    class Quiet:
        def log_metrics(self, *args):
            pass

    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    rc = run_config([*QUICK, "dataset=textfile", f"dataset.path={text}", "cell=lstm",
                     "cell.hidden_size=96", "train.batch_size=16", "train.seq_len=40"])
    tracemalloc.start()
    try:
        trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(Quiet(), print))
        need = training_estimate(rc, trainer.corpus, trainer.feed.kind)
        trainer.train_step()
        trainer.train_step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert need.total <= peak


def test_check_fits_passes_what_fits_and_can_be_turned_off(monkeypatch):
    need = MemoryEstimate(parameters=GiB, gradients=GiB, optimizer=2 * GiB, activations=GiB)
    check_fits(need, (6 * GiB, "plenty"))
    with pytest.raises(ConfigError, match="5.0 GiB .* but 4.0 GiB is available"):
        check_fits(need, (4 * GiB, "MemAvailable"))
    monkeypatch.setenv("RNNLAB_SKIP_MEMORY_CHECK", "1")
    check_fits(need, (1, "nothing"))


def test_available_memory_reads_this_machine():
    found = resources.available_memory()
    assert found is not None and found[0] > 0 and found[1]


@needs_data("dinos.txt")
def test_real_process_huge_hidden_size_fails_in_seconds_without_allocating(tmp_path):
    # 4 * 10**6 * (10**6 + 27) float32 parameters: 16 TB, more than any machine has.
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", (
        "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
        "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
        "file=sys.stderr); sys.exit(rc)"),
        sys.executable, "-m", "framework", "cell.hidden_size=1000000", "mlflow.enabled=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("rnnlab: error: this config needs about")
    assert "is available" in lines[0]
    assert int(lines[1].split()[1]) < 1024 * 1024  # peak RSS below 1 GiB: nothing allocated
    assert time.monotonic() - t0 < 60


# --------------------------------------------------------------------------- dataset files
def _fifo(tmp_path):
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("make, kind", [
    (_fifo, "a named pipe (FIFO)"),
    (lambda tmp_path: Path("/dev/zero"), "a character device"),
    (lambda tmp_path: Path("/dev/null"), "a character device"),
    (lambda tmp_path: tmp_path, "a directory"),
])
def test_dataset_paths_that_are_not_regular_files_are_refused_without_opening(tmp_path, make,
                                                                                kind):
    path = make(tmp_path)
    result: list = []

    def load() -> None:
        try:
            files.read_text(files.locate(None, path))
        except DataError as exc:
            result.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)  # a FIFO opened for reading would block here forever
    assert result, "reading the path hung"
    assert f"is {kind}, not a regular file" in str(result[0])


def test_a_socket_is_refused(tmp_path):
    import socket

    path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        with pytest.raises(DataError, match="is a socket, not a regular file"):
            files.read_text(path)
    finally:
        sock.close()


def test_local_files_have_the_same_size_cap_as_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_DATA_BYTES", 1000)
    big = tmp_path / "big.txt"
    big.write_text("a" * 1001)
    with pytest.raises(DataError, match="larger than .* fix dataset.path"):
        files.locate(None, big)
    with pytest.raises(DataError, match="larger than"):
        files.read_text(big)
    big.write_text("a" * 1000)
    assert files.read_text(big) == "a" * 1000


def test_a_file_that_grows_after_the_check_is_still_capped(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("abc")
    real_check = files.check_regular_file

    def check_then_grow(p, fix):
        info = real_check(p, fix)
        path.write_text("x" * 50)
        return info

    monkeypatch.setattr(files, "MAX_DATA_BYTES", 10)
    monkeypatch.setattr(files, "check_regular_file", check_then_grow)
    with pytest.raises(DataError, match="larger than"):
        files.read_text(path)


# --------------------------------------------------------------------------- generated lengths
@pytest.mark.parametrize("override, needle", [
    ("train.sample_length=100001", "train.sample_length must be in [1, 100000]"),
    ("train.sample_length=0", "train.sample_length must be in [1, 100000]"),
    ("train.num_samples=10001", "train.num_samples must be in [0, 10000]"),
])
def test_training_sample_lengths_are_bounded(override, needle):
    with pytest.raises(ConfigError) as info:
        run_config([override])
    assert needle in str(info.value)


def test_generate_function_bounds_length_samples_and_prompt():
    from framework.data.vocab import Vocab
    from framework.nn.generation import MAX_LENGTH, MAX_PROMPT, MAX_SAMPLES, generate

    vocab = Vocab.from_text("ab", eos="\n")
    for kwargs, needle in (({"length": MAX_LENGTH + 1}, "length must be an integer in"),
                           ({"num_samples": MAX_SAMPLES + 1}, "num_samples must be"),
                           ({"prompt": "a" * (MAX_PROMPT + 1)}, "shorten it")):
        with pytest.raises(ConfigError, match=needle):
            generate(None, vocab, None, **kwargs)


def _pyfunc(tmp_path):
    from framework.tracking.pyfunc import load_text_model
    from tests.tracking.test_pyfunc import make_checkpoint

    return load_text_model(make_checkpoint(tmp_path / "c.npz", hidden_size=4, num_layers=1))


def _status_of(model, records) -> int:
    from mlflow.exceptions import MlflowException

    try:
        model.predict(None, pd.DataFrame(records))
    except MlflowException as exc:
        return exc.get_http_status_code()
    return 200


def test_served_model_caps_each_request_with_a_400(tmp_path, monkeypatch):
    import framework.nn.generation as sampling
    from framework.tracking import pyfunc

    model = _pyfunc(tmp_path)
    assert _status_of(model, [{"prompt": "ab", "length": 5, "num_samples": 2}]) == 200
    assert _status_of(model, [{"prompt": "ab", "length": pyfunc.MAX_LENGTH + 1}]) == 400
    assert _status_of(model, [{"prompt": "ab", "num_samples": pyfunc.MAX_SAMPLES + 1}]) == 400
    assert _status_of(model, [{"prompt": "a" * (pyfunc.MAX_PROMPT + 1)}]) == 400
    assert _status_of(model, [{"prompt": "a"}] * (pyfunc.MAX_ROWS + 1)) == 400
    assert _status_of(model, [{"prompt": "a", "seed": -1}]) == 400
    # Each row is within its bounds, the request as a whole is not: refused before any work.
    calls = []
    monkeypatch.setattr(sampling, "generate", lambda *a, **k: calls.append(1) or [])
    rows = [{"prompt": "ab", "length": pyfunc.MAX_LENGTH, "num_samples": pyfunc.MAX_SAMPLES}] * 2
    assert _status_of(model, rows) == 400 and not calls


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "prompt": st.text(alphabet="ab", max_size=20),
    "length": st.integers(-5, 20_000), "num_samples": st.integers(-2, 150),
    "seed": st.one_of(st.none(), st.integers(-3, 10**12))}), min_size=1, max_size=4))
def test_fuzz_served_requests_are_answered_or_refused_with_400(tmp_path_factory, records):
    from framework.tracking import pyfunc

    model = _fuzz_model(tmp_path_factory)
    ok = all(0 <= r["length"] <= pyfunc.MAX_LENGTH and 1 <= r["num_samples"] <= pyfunc.MAX_SAMPLES
             and (r["seed"] is None or r["seed"] >= 0) for r in records)
    work = sum(r["num_samples"] * (len(r["prompt"]) + r["length"]) for r in records)
    big = ok and work > 20_000  # keep the fuzzing fast: only check that those would be allowed
    if big:
        return
    assert _status_of(model, records) == (200 if ok else 400)


_FUZZ_MODEL: list = []


def _fuzz_model(tmp_path_factory):
    if not _FUZZ_MODEL:
        _FUZZ_MODEL.append(_pyfunc(tmp_path_factory.mktemp("fuzz")))
    return _FUZZ_MODEL[0]


def test_generate_cli_refuses_an_unbounded_length_at_once(tmp_path):
    proc = cli("framework.generate", ["checkpoint=nowhere.npz", "length=100000000"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "rnnlab: error: length must be in [1, 100000], got 100000000"
