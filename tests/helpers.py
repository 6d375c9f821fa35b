"""Shared test helpers: composing configs in-process and running the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from framework import ROOT
from framework.cli.overrides import store_plugin_configs
from framework.training.config import RunConfig, validate

# Small, quick settings shared by tests that train.
QUICK = ["train.steps=12", "train.log_every=1", "train.eval_every=6", "train.sample_every=6",
         "train.checkpoint_every=6", "train.num_samples=2", "train.sample_length=20",
         "cell.hidden_size=8", "train.batch_size=4", "mlflow.enabled=false"]


def compose_config(overrides: list[str]):
    store_plugin_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_config(overrides: list[str]) -> RunConfig:
    return validate(compose_config(overrides))


def cli(module: str, args: list[str], cwd: Path, timeout: float = 300,
        env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def data_env() -> dict[str, str]:
    """The environment for a CLI subprocess: this checkout importable, the data directory set."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return env
