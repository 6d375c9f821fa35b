"""A new user on a fresh machine: no shared data folder, no network, the README's commands.

Also the everyday rough edges: the resume download's temp folder, a sweep preset run without
-m, wide comparison tables, how samples print, which machine a benchmark ran on.
"""

from __future__ import annotations

import gc
import hashlib
import io
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from framework.data.files import fetch as files
from framework.data.files.fetch import Source
from framework.errors import DataError
from tests.conftest import REPO, REQUIRE_DATA_ENV
from tests.helpers import sqlite_store

PAYLOAD = b"aachenosaurus\naardonyx\nzuul\n"
SOURCE = Source("names.txt", "https://example.invalid/names.txt",
                hashlib.sha256(PAYLOAD).hexdigest())
# A proxy nobody listens on: every download fails at once, network or not.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "no_proxy": "", "NO_PROXY": ""}


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """RNNLAB_DATA_DIR names a folder that does not exist; the cache is empty."""
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path / "shared" / "data"))
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "_warned", set())
    return tmp_path


# --------------------------------------------------------------------------- the data folder
def test_a_missing_data_folder_falls_through_to_the_download_with_one_warning(fresh, monkeypatch,
                                                                              capsys):
    fetched = []
    monkeypatch.setattr("urllib.request.urlopen",
                        lambda request, timeout: fetched.append(request) or _Response(PAYLOAD))
    first = files.locate(SOURCE)
    second = files.locate(SOURCE)  # now from the cache
    assert first == second == fresh / "cache" / "names.txt" and first.read_bytes() == PAYLOAD
    assert len(fetched) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"rnnlab: warning: RNNLAB_DATA_DIR={fresh / 'shared' / 'data'} is not a directory; "
        f"using the download cache {fresh / 'cache'} instead"]


def test_when_the_download_fails_too_the_error_names_both_places(fresh, monkeypatch, capsys):
    import urllib.error

    def offline(request, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DataError) as info:
        files.locate(SOURCE)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"names.txt was not found in RNNLAB_DATA_DIR="
                              f"{fresh / 'shared' / 'data'} (not a directory) nor in the "
                              f"download cache {fresh / 'cache'}, and could not download")
    assert "set RNNLAB_DATA_DIR or dataset.path" in message


def test_a_data_folder_without_the_file_is_named_too(fresh, monkeypatch):
    import urllib.error

    (fresh / "shared" / "data").mkdir(parents=True)
    monkeypatch.setattr("urllib.request.urlopen",
                        lambda r, timeout: (_ for _ in ()).throw(urllib.error.URLError("no")))
    with pytest.raises(DataError, match=r"not found in .*names\.txt \(no such file\) nor in"):
        files.locate(SOURCE)


def test_real_process_readme_command_on_a_fresh_offline_machine(tmp_path):
    """The README's first command where ../shared/data does not exist and nothing downloads."""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(REPO), "RNNLAB_DATA_DIR": "../shared/data",
           "RNNLAB_CACHE_DIR": str(tmp_path / "cache")}
    work = tmp_path / "clone"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "framework", "cell=lstm", "dataset=dinos"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0] == (f"rnnlab: warning: RNNLAB_DATA_DIR=../shared/data is not a directory; "
                        f"using the download cache {tmp_path / 'cache'} instead")
    assert lines[1].startswith("rnnlab: error: dinos.txt was not found in RNNLAB_DATA_DIR="
                               "../shared/data (not a directory) nor in the download cache")
    assert not (work / "mlflow.db").exists()  # no empty MLflow run left behind


# --------------------------------------------------------------------------- the test suite
def test_tests_that_need_data_skip_with_the_reason_on_a_clone_without_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, **OFFLINE, "RNNLAB_DATA_DIR": str(empty)}
    env.pop("RNNLAB_TEST_CACHE_DIR", None)
    env.pop(REQUIRE_DATA_ENV, None)  # CI sets it; this test is about a clone outside CI
    env.pop("PYTEST_XDIST_WORKER", None)  # set when this test runs in a pytest-xdist worker
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-n", "0",
         "tests/data/test_datasets.py::test_dinos_course_vocabulary_and_names",
         "tests/training/test_trainer.py::test_metrics_are_logged_with_step_indices",
         "tests/data/test_datasets.py::test_schema_range_checks"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 passed, 2 skipped" in proc.stdout
    assert f"needs dinos.txt: dinos.txt was not found in {empty / 'dinos.txt'}" in proc.stdout


def test_in_ci_a_missing_data_file_fails_the_test_and_names_it(tmp_path, monkeypatch):
    import tests.conftest as setup

    for name, value in {**OFFLINE, "RNNLAB_DATA_DIR": str(tmp_path),
                        "RNNLAB_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(setup, "_available", {})  # look again, in the empty folder
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs dinos.txt: dinos.txt was not found"):
        setup.require_data("dinos.txt")
    monkeypatch.setenv(REQUIRE_DATA_ENV, "1")
    with pytest.raises(pytest.fail.Exception,
                       match=f"needs dinos.txt: dinos.txt was not found.*{REQUIRE_DATA_ENV}"):
        setup.require_data("dinos.txt")


# --------------------------------------------------------------------------- resume=<run id>
def test_a_downloaded_checkpoint_is_removed_when_the_run_ends(tmp_path, monkeypatch):
    import tempfile

    from framework.tracking.tracker import MlflowTracker

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    uri = sqlite_store(tmp_path / "m.db")
    source = MlflowTracker(uri)
    run_id = source.start()
    checkpoint = tmp_path / "latest.npz"
    checkpoint.write_bytes(b"PK\x05\x06" + bytes(18))
    source.log_checkpoint(str(checkpoint))
    source.end()

    def downloads() -> list[str]:
        return [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("rnnlab-resume-")]

    resumer = MlflowTracker(uri)
    local = resumer.download_checkpoint(run_id)
    assert local.read_bytes() == checkpoint.read_bytes() and downloads()
    resumer.start()
    resumer.end()
    assert downloads() == []
    # A run that stops before it starts (bad checkpoint) still leaves nothing at exit/GC.
    other = MlflowTracker(uri)
    other.download_checkpoint(run_id)
    assert downloads()
    del other
    gc.collect()
    assert downloads() == []


# --------------------------------------------------------------------------- sweep presets
def test_a_sweep_preset_without_multirun_warns_in_one_line(capsys):
    from framework.sweeps.nested_runs import SweepCallback

    preset = OmegaConf.load(REPO / "experiments" / "rnn_vs_lstm_vs_gru.yaml")
    SweepCallback().on_run_start(OmegaConf.create({"hydra": preset.hydra}))
    assert capsys.readouterr().err.splitlines() == [
        "rnnlab: warning: this config defines a sweep (cell: rnn,lstm,gru) but runs without -m, "
        "so only one job trains; add -m to run them all"]
    SweepCallback().on_run_start(OmegaConf.create({"hydra": {"sweeper": {"params": None}}}))
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- compare
def _runs(n_params: int) -> list:
    runs = []
    for i in range(3):
        params = {f"train.option_{k:02d}": str(i * k) for k in range(n_params)}
        params["cell.name"] = ("rnn", "lstm", "gru")[i]
        runs.append(SimpleNamespace(
            info=SimpleNamespace(run_name=f"run-{i}", run_id=f"{i:032x}", status="FINISHED",
                                 start_time=i),
            data=SimpleNamespace(params=params, metrics={"val_loss": 2.0 - i / 10})))
    return runs


def test_compare_fits_the_terminal_and_keeps_the_plugin_choices(capsys, monkeypatch):
    from framework.tracking.run_table import build_table

    table = build_table(_runs(40), "wide")
    assert len(table.to_text().splitlines()[1]) > 500
    fitted, hidden = table.fitted(120)
    assert all(len(line) <= 120 for line in fitted.to_text().splitlines()[1:])
    # option_00 is 0 in every run: 39 options and cell.name vary
    assert "cell.name" in fitted.params and len(hidden) == 40 - len(fitted.params)
    assert set(fitted.params) | set(hidden) == set(table.params)
    narrow, none = build_table(_runs(2), "narrow").fitted(160)
    assert none == [] and narrow.params == ["cell.name", "train.option_01"]


def test_compare_command_shows_varying_params_that_fit_or_the_ones_asked_for(tmp_path, capsys,
                                                                             monkeypatch):
    from mlflow import MlflowClient
    from mlflow.entities import Param

    from framework.cli.compare import main

    uri = sqlite_store(tmp_path / "m.db")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("wide", artifact_location=(tmp_path / "a").as_uri())
    for run in _runs(40):
        r = client.create_run(exp, run_name=run.info.run_name)
        client.log_batch(r.info.run_id, params=[Param(k, v) for k, v in run.data.params.items()])
    monkeypatch.setenv("COLUMNS", "150")
    assert main(["wide", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()[1:]) <= 150
    assert "more params vary and are not shown; --format csv shows them all" in out
    assert main(["wide", "--tracking-uri", uri, "--params", "cell.name"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[4:6] == ["cell.name", "val_loss"]
    assert main(["wide", "--tracking-uri", uri, "--params", "nope"]) == 2
    assert "no run has the param(s) nope" in capsys.readouterr().err
    assert main(["wide", "--tracking-uri", uri, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].count(",") == 4 + 40 + 2


# --------------------------------------------------------------------------- samples, machine
def test_text_samples_print_readably_not_as_python_reprs():
    from framework.tasks.lm import sample_lines

    assert sample_lines(["brasiasaurus", "zuul"]) == ["  brasiasaurus", "  zuul"]
    assert sample_lines(["to be,\nor not", "it's\n"]) == [
        "  to be,", "  or not", "", "  it's", "  "]
    assert sample_lines(["bell\x07 esc\x1b[2J cr\r tab\t"]) == [
        "  bell\\x07 esc\\x1b[2J cr\\r tab\t"]


def test_benchmarks_name_the_cpu_and_blas_kernel():
    from framework.studies.machine import blas_report, cpu_model, machine_line

    assert cpu_model() and "CPU(s)" in cpu_model()
    assert blas_report()
    line = machine_line()
    assert line.startswith("CPU: ") and "; BLAS: " in line and math.isfinite(len(line))


def test_nothing_in_the_repo_points_at_data_outside_it():
    """The shared data folder is found through RNNLAB_DATA_DIR or the cache, never hard-wired
    into the code (tests default to ../shared/data only when it exists)."""
    for path in (REPO / "framework").rglob("*.py"):
        assert "shared/data" not in path.read_text(), path
    assert Path(REPO / "tests" / "conftest.py").read_text().count("shared") == 2
