"""The everyday short commands import only what they use: ``--help``, ``--cfg job``,
``framework.generate`` and ``framework.predict`` (and an untracked run) never import MLflow,
matplotlib, Optuna, pandas, SciPy, music21, SQLAlchemy or tqdm, which would add up to seconds
to a command that otherwise starts in half a second; generate and predict not the installed
packages' metadata reader nor the plugins only training uses either."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_data

HEAVY = ("mlflow", "matplotlib", "optuna", "pandas", "scipy", "music21", "sqlalchemy", "tqdm")
# What reading a checkpoint does not use: the installed packages' metadata reader (no package
# declares an rnnlab.* entry point here) and the built-in plugins of the kinds only training uses.
NOT_FOR_READING = ("importlib.metadata", "email", "framework.nn.clip", "framework.nn.schedules",
                   "framework.data.feeds.text", "framework.data.feeds.labelled",
                   "framework.data.feeds.series", "framework.data.feeds.sequences",
                   "framework.data.feeds.parallel")


def imported_packages(args: list[str], cwd: Path) -> set[str]:
    """Top-level packages the command imported (from ``python -X importtime``)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    env.setdefault("RNNLAB_DATA_DIR", str(Path(__file__).resolve().parents[2].parent / "shared"
                                          / "data"))
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \| +([\w.]+)$", proc.stderr, re.M)
    assert names, "no import times were printed"
    return {name.split(".")[0] for name in names}


def loaded_modules(module: str, args: list[str], cwd: Path) -> set[str]:
    """Every module in ``sys.modules`` when ``python -m <module> <args>`` ends, however it was
    imported (``-X importtime`` does not see ``importlib.import_module``)."""
    code = ("import atexit, json, runpy, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
            f"sys.argv = [{module!r}, *{args!r}]\n"
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from tests.tracking.test_pyfunc import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("lazy") / "c.npz", hidden_size=4,
                           num_layers=1)


@pytest.mark.parametrize("args", [["-m", "framework", "--help"],
                                  ["-m", "framework", "--cfg", "job"]])
def test_help_and_config_printing_import_no_heavy_package(tmp_path, args):
    assert not imported_packages(args, tmp_path) & set(HEAVY)


def test_generate_and_predict_import_no_heavy_package(tmp_path, checkpoint):
    generate = imported_packages(["-m", "framework.generate", f"checkpoint={checkpoint}",
                                  "num_samples=2", "length=5"], tmp_path)
    predict = imported_packages(["-m", "framework.predict", f"checkpoint={checkpoint}",
                                 "text=ab", "length=5"], tmp_path)
    assert not (generate | predict) & set(HEAVY)
    assert "numpy" in generate and "hydra" in predict  # the probe sees real imports


def test_generate_and_predict_import_no_training_plugin_or_package_metadata(tmp_path, checkpoint):
    for module, args in (("framework.generate", ["num_samples=2", "length=5"]),
                         ("framework.predict", ["text=ab", "length=5"])):
        modules = loaded_modules(module, [f"checkpoint={checkpoint}", *args], tmp_path)
        assert "framework.nn.samplers" in modules  # the probe sees plugin modules
        assert not modules & set(NOT_FOR_READING), (module, modules & set(NOT_FOR_READING))


@needs_data("dinos.txt")
def test_an_untracked_run_imports_no_tracking_package(tmp_path):
    packages = imported_packages(["-m", "framework", "cell=rnn", "cell.hidden_size=8",
                                  "train.steps=1", "train.sample_every=0",
                                  "mlflow.enabled=false", "hydra.run.dir=run"], tmp_path)
    assert not packages & {"mlflow", "sqlalchemy", "pandas", "matplotlib", "optuna"}
