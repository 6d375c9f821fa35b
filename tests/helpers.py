"""Shared test helpers: composing configs in-process and running the CLI in a subprocess."""

from __future__ import annotations

import contextlib
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


def builtin_names(registry) -> list[str]:
    """The names of a registry's plugins that ship with rnnlab (framework/, cells/, datasets/),
    for tests of built-in behaviour; a plugin from RNNLAB_PLUGIN_PATH or a package is not one."""
    shipped = ("framework.", "cells.", "rnnlab_plugins.cells.", "rnnlab_plugins.datasets.")
    return [name for name in registry.names() if registry.entry(name).origin.startswith(shipped)]


@contextlib.contextmanager
def isolated_registries():
    """Undo every registration made inside the block (a test's plugins must not leak into the
    registries other tests read)."""
    from framework.registry import ALL

    saved = {kind: dict(registry._read()) for kind, registry in ALL.items()}
    try:
        yield
    finally:
        for kind, registry in ALL.items():
            registry._entries.clear()
            registry._entries.update(saved[kind])


def data_file_reason(dataset) -> str | None:
    """Why a dataset plugin's default file cannot be used without downloading (None: it can)."""
    from framework.data.files import DATA_DIR_ENV, cache_dir

    source = dataset.source
    if source is None:
        return None
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir and (Path(data_dir) / source.filename).is_file():
        return None
    if (cache_dir() / source.filename).is_file():
        return None
    return (f"{source.filename} is in neither {DATA_DIR_ENV}={data_dir or '(unset)'} nor the "
            f"download cache (tests do not download)")
