"""Shared test helpers: composing configs and running the CLI in-process or in a subprocess, and
the finite-difference reference of the gradient checks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
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


# The command behind each ``python -m`` module, for running it in this process.
MAINS = {"framework": "framework.cli.train", "framework.generate": "framework.cli.generate",
          "framework.predict": "framework.cli.predict",
          "framework.compare": "framework.cli.compare",
          "framework.bench": "framework.studies.bench",
          "framework.coursebench": "framework.studies.coursebench",
          "framework.vanishing": "framework.studies.vanishing"}


def run_cli(module: str, args: list[str], cwd: Path | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m module args`` in this process: the same ``main()`` and the same exit status,
    stdout and stderr as :func:`cli`, without starting Python and importing MLflow again.

    Only for tests that are not about the process itself: no helper process is started (a
    tracked run logs to MLflow from this process, as ``mlflow.helper_process=false`` does), and
    warnings go to pytest's warning capture rather than to ``stderr``.
    """
    import atexit
    import importlib
    import inspect
    import io

    main = importlib.import_module(MAINS[module]).main
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    os.environ.update(env or {})
    sys.argv = [module, *args]
    os.chdir(cwd or saved_cwd)
    # What rnnlab registers to run at the command's exit (e.g. ending a sweep's parent run) runs
    # when it returns, as the process would run it, not when pytest exits.  A library's exit
    # function stays for pytest's exit: multiprocessing's joins the launcher's idle pool workers,
    # which wait minutes for more work.
    at_exit: list = []
    register = atexit.register
    atexit.register = lambda func, *a, **kw: at_exit.append((func, a, kw)) or func
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                preserved_logging(), preserved_hydra_state():
            try:
                # A command whose main() takes argv (the argparse ones) is given the arguments.
                result = main(args) if inspect.signature(main).parameters else main()
                code = result if isinstance(result, int) else 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            finally:
                atexit.register = register
                for func, a, kw in reversed(at_exit):
                    if getattr(func, "__module__", "").startswith("framework"):
                        func(*a, **kw)
                    else:  # a library's (multiprocessing joins its idle pool workers): at exit
                        atexit.register(func, *a, **kw)
    finally:
        atexit.register = register
        # A sweep's job counts are kept for its command's exit; the next command starts without.
        nested_runs = sys.modules.get("framework.sweeps.nested_runs")
        if nested_runs is not None:
            nested_runs.finished_sweeps.clear()
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess([module, *args], code, stdout.getvalue(),
                                       stderr.getvalue())


@contextlib.contextmanager
def preserved_logging() -> Iterator[None]:
    """Undo what Hydra's logging setup does to this process (generate's config disables every
    existing logger; a run's job logging adds a file handler in its output folder), so later
    tests still see rnnlab's warnings and no log file stays open."""
    import logging

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.disabled, lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    try:
        yield
    finally:
        for lg, disabled, level, handlers, propagate in saved:
            for handler in lg.handlers:
                if handler not in handlers and isinstance(handler, logging.FileHandler):
                    handler.close()
            lg.disabled, lg.level, lg.propagate = disabled, level, propagate
            lg.handlers[:] = handlers


@contextlib.contextmanager
def preserved_hydra_state() -> Iterator[None]:
    """Undo what a ``@hydra.main`` run leaves in this process (its config as ``HydraConfig``,
    read by code that asks for the run's output folder): later tests run outside Hydra."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    config, hydra = HydraConfig.instance().cfg, GlobalHydra.instance().hydra
    try:
        yield
    finally:
        HydraConfig.instance().cfg = config
        GlobalHydra.instance().hydra = hydra


def sqlite_store(path: Path) -> str:
    """The URI of a new, empty MLflow sqlite store at ``path``: a copy of one store whose schema
    was created once per test session (creating it costs about 1.5 s of CPU, a copy 0.05 s).

    Not for tests about a fresh store's first use (the schema race of parallel jobs).
    """
    import shutil
    import sqlite3
    import tempfile

    template = Path(os.environ.get("RNNLAB_TEST_CACHE_DIR") or tempfile.gettempdir(),
                    "mlflow-store-template", "mlflow.db")
    if not template.is_file():
        from framework.tracking.tracker import make_client

        template.parent.mkdir(parents=True, exist_ok=True)
        make_client(f"sqlite:///{template}")
    shutil.copyfile(template, path)
    # The Default experiment's artifact folder, as a store created beside ``path`` has it.
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("update experiments set artifact_location = ? where experiment_id = '0'",
                   (str(path.parent / "mlruns" / "0"),))
    return f"sqlite:///{path}"


def data_env() -> dict[str, str]:
    """The environment for a CLI subprocess: this checkout importable, the data directory set."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return env


# ------------------------------------------------------------------ gradient checks
# Analytic gradients are computed in float64.  The numeric reference is computed in extended
# precision (np.longdouble, 64-bit mantissa) with a fourth-order central difference: in plain
# float64 a central difference has an absolute noise floor of ~1e-10 (rounding of the loss
# divided by eps), which makes a 1e-7 relative check meaningless for small gradient entries.
LD = np.longdouble
EPS = 1e-4  # fourth-order stencil: truncation ~eps^4, rounding ~1e-19/eps
TINY = 1e-7  # entries with |a|+|n| below this are compared absolutely (|a-n| < 1e-14)
TOL = 1e-7
# The worst relative error seen per checked model (e.g. "lstm", "gru x classify"), printed by
# conftest.py's terminal summary after the run.
GRADCHECK_WORST: dict[str, float] = {}


def record_gradcheck(label: str, err: float) -> None:
    """Keep the worst relative error a gradient check of ``label`` saw, for the run's summary."""
    GRADCHECK_WORST[label] = max(GRADCHECK_WORST.get(label, 0.0), err)


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """max |a - n| / max(|a| + |n|, TINY), computed in extended precision."""
    a = np.asarray(a, dtype=LD)
    n = np.asarray(n, dtype=LD)
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), TINY), initial=0.0))


def numeric_grad(f, arr: np.ndarray) -> np.ndarray:
    """d f / d arr by the 4th-order stencil (-f(+2h) + 8 f(+h) - 8 f(-h) + f(-2h)) / 12h."""
    grad = np.zeros(arr.shape, dtype=LD)
    flat = arr.reshape(-1)
    gflat = grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        vals = []
        for step in (2, 1, -1, -2):
            flat[k] = old + step * EPS
            vals.append(f())
        flat[k] = old
        gflat[k] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * EPS)
    return grad


def model_checkpoint(*, cell: str = "gru", hidden_size: int = 4, num_layers: int = 1,
                     chars: str = "\nab", dtype: str = "float32", fill: float | None = None,
                     optimizer: str | None = "adam", state_rows: int | None = None,
                     batch_size: int = 4, step: int = 3, **meta_fields) -> tuple[dict, dict]:
    """``(arrays, meta)`` of a valid checkpoint of a small model: parameters (random, or all
    ``fill``), the optimizer's ``t`` and buffers when ``optimizer`` is given, the carried state
    when ``state_rows`` is given."""
    import numpy as np

    from framework.data.vocab import Vocab
    from framework.nn.models.language_model import CharRNN
    from framework.registry import OPTIMIZERS
    from framework.training.checkpoint import build_meta, pack_arrays

    vocab = Vocab(tuple(sorted(chars)))
    model = CharRNN(cell, vocab.size, hidden_size, num_layers=num_layers, dtype=dtype)
    params = model.init_params(np.random.default_rng(0))
    if fill is not None:
        params = {k: np.full_like(v, fill) for k, v in params.items()}
    optim = None
    if optimizer is not None:
        optim = {"t": np.array(step, dtype=np.int64)}
        for slot in OPTIMIZERS.get(optimizer).slots:
            optim.update({f"{slot}.{k}": np.zeros_like(v) for k, v in params.items()})
    carried = None if state_rows is None else model.zero_state(state_rows)
    fields = dict(cell=cell, hidden_size=hidden_size, num_layers=num_layers, dropout=0.0,
                  init="xavier", dtype=dtype, cell_options={}, vocab_json=vocab.to_json(),
                  step=step, dataset="textfile", optimizer=optimizer, corpus_kind="stream",
                  smooth_loss=1.5, config={"seed": 1, "train": {"batch_size": batch_size}})
    fields.update(meta_fields)
    return pack_arrays(params, optim, carried), build_meta(**fields)
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


@contextlib.contextmanager
def plugin_path(folder: Path) -> Iterator[None]:
    """This process as a new one started with ``RNNLAB_PLUGIN_PATH=folder``: the folder's plugin
    files are discovered and registered (with their Hydra configs) inside the block, and every
    registration, config and imported plugin module is undone at its end."""
    from hydra.core.config_store import ConfigStore

    from framework.cli.overrides import REGISTRIES
    from framework.plugins import PATH_ENV, load_plugins, package_name

    before = {group: set(registry.names()) for group, registry in REGISTRIES.items()}
    saved_env = os.environ.get(PATH_ENV)
    prefix = package_name(Path(folder)) + "."

    def forget_modules() -> None:  # imported again: importing a plugin file registers it
        for name in [m for m in sys.modules if m.startswith(prefix)]:
            del sys.modules[name]

    forget_modules()
    os.environ[PATH_ENV] = str(folder)
    try:
        with isolated_registries():
            load_plugins()
            added = {group: set(registry.names()) - before[group]
                     for group, registry in REGISTRIES.items()}
            yield
    finally:
        if saved_env is None:
            os.environ.pop(PATH_ENV, None)
        else:
            os.environ[PATH_ENV] = saved_env
        forget_modules()
    # The configs Hydra was given for the folder's plugins go too (the train.* options of a
    # feed or schedule are stored again from what is registered now).
    repo = ConfigStore.instance().repo
    for group, names in added.items():
        node = repo
        for part in group.split("/"):
            node = node.get(part, {})
        for name in names:
            node.pop(f"{name}.yaml", None)
    store_plugin_configs()


def data_file_reason(dataset) -> str | None:
    """Why a dataset plugin's default file cannot be used without downloading (None: it can)."""
    import importlib.util

    from framework.data.files.fetch import DATA_DIR_ENV, cache_dir

    for package in getattr(dataset, "requires", ()):  # an optional extra, e.g. music21
        if importlib.util.find_spec(package) is None:
            return f"dataset '{dataset.name}' needs {package}, which is not installed"
    sources = [s for s in (getattr(dataset, "source", None), *getattr(dataset, "sources", ()))
               if s is not None]
    data_dir = os.environ.get(DATA_DIR_ENV)
    for source in sources:
        if data_dir and (Path(data_dir) / source.filename).is_file():
            continue
        if (cache_dir() / source.filename).is_file():
            continue
        return (f"{source.filename} is in neither {DATA_DIR_ENV}={data_dir or '(unset)'} nor "
                f"the download cache (tests do not download)")
    return None
