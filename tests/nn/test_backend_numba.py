"""cell.backend=numba: optional, agrees with the NumPy path within float32 rounding (float64:
to rounding), moves checkpoints freely, fails in one line without numba.  The finite-difference
gradient checks of the compiled path are the ``numba`` parametrisation of
tests/nn/test_cells_gradcheck.py.  No timing here: speed claims come from ``python -m
framework.bench``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framework.errors import ConfigError
from framework.nn import cell as cell_module
from framework.nn.models.language_model import CharRNN
from framework.plugins import load_plugins
from framework.registry import CELLS, OPTIMIZERS

load_plugins()
ROOT = Path(__file__).resolve().parents[2]
HAS_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason='needs numba: pip install -e ".[fast]"')
CELL_NAMES = ("rnn", "lstm", "gru")


def _data(name: str) -> bool:
    folder = os.environ.get("RNNLAB_DATA_DIR")
    return bool(folder) and (Path(folder) / name).is_file()


needs_dinos = pytest.mark.skipif(not _data("dinos.txt"), reason="needs $RNNLAB_DATA_DIR/dinos.txt")


# --------------------------------------------------------------------------- configuration
def test_backend_is_validated() -> None:
    with pytest.raises(ConfigError, match="backend must be one of numpy, numba"):
        CELLS.build({"name": "lstm", "backend": "cuda"})
    assert CELLS.build({"name": "gru"}).backend == "numpy"


def test_missing_numba_is_a_one_line_error_naming_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(cell_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        CELLS.build({"name": "lstm", "hidden_size": 4, "backend": "numba"})
    message = str(err.value)
    assert "\n" not in message and 'pip install -e ".[fast]"' in message
    assert "cell.backend=numba" in message


def test_help_does_not_import_numba() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "framework", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "import time:" in proc.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert not [name for name in imported if name.split(".")[0] in ("numba", "llvmlite")]


def test_numba_cache_dir_falls_back_to_the_user_cache(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cell_module.os, "access", lambda *a: True)
    assert cell_module.numba_cache_dir() is None  # numba's own __pycache__ beside the module
    monkeypatch.setattr(cell_module.os, "access", lambda *a: False)
    assert cell_module.numba_cache_dir() == tmp_path / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert cell_module.numba_cache_dir() is None  # numba reads the variable itself


# --------------------------------------------------------------------------- numerics
def test_rational_tanh_error() -> None:
    pytest.importorskip("numba")
    from framework.nn.numba_kernels import tanh32

    x = np.concatenate([np.linspace(-12, 12, 200_001, dtype=np.float32),
                        np.float32(2.0) ** -np.arange(1, 120, dtype=np.float32)])
    err = np.abs(tanh32(x).astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert err.max() < 4e-7
    small = (np.abs(x) < 1e-3) & (x != 0)  # relative precision near 0
    assert (err[small] / np.abs(x[small])).max() < 2e-7


def _pair(cell: str, dtype: str, layers: int = 2) -> tuple[CharRNN, CharRNN]:
    models = [CharRNN(cell, 7, 16, num_layers=layers, dropout=0.2 if layers > 1 else 0.0,
                      dtype=dtype, cell_options={"backend": backend})
              for backend in ("numpy", "numba")]
    models[0].init_params(np.random.default_rng(5))
    rng = np.random.default_rng(6)
    for value in models[0].params.values():
        value += rng.normal(0.0, 0.3, value.shape).astype(value.dtype)
    models[1].params = {k: v.copy() for k, v in models[0].params.items()}
    return models[0], models[1]


@needs_numba
@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_compiled_path_agrees_with_numpy(cell: str, dtype: str, rtol: float) -> None:
    ref, fast = _pair(cell, dtype)
    rng = np.random.default_rng(1)
    T, B = 9, 5
    inputs = rng.integers(-1, 7, (T, B))
    targets = rng.integers(-1, 7, (T, B))
    state0 = [tuple(rng.normal(0, 0.5, (B, 16)).astype(dtype) for _ in s)
              for s in ref.zero_state(B)]
    out = [m.loss_and_grads(inputs, targets, state0, dropout_rng=np.random.default_rng(3))
           for m in (ref, fast)]
    (loss_a, n_a, grads_a, state_a), (loss_b, n_b, grads_b, state_b) = out
    assert n_a == n_b and loss_b == pytest.approx(loss_a, rel=rtol)
    for key, g in grads_a.items():
        scale = np.abs(g).max()
        assert np.abs(grads_b[key] - g).max() <= rtol * scale, key
    for sa, sb in zip(state_a, state_b, strict=True):
        for a, b in zip(sa, sb, strict=True):
            np.testing.assert_allclose(b, a, rtol=0, atol=rtol)
    assert fast.stack.cell.kernels_for(np.dtype(dtype)) is not None  # the kernels did run


@needs_numba
def test_adam_kernel_matches_numpy_adam() -> None:
    from framework.nn import numba_kernels

    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(5, 7)), "b": rng.normal(size=11)}
    fast_params = {k: v.copy() for k, v in params.items()}
    ref = OPTIMIZERS.build({"name": "adam", "lr": 0.01})
    fast = OPTIMIZERS.build({"name": "adam", "lr": 0.01})
    fast.use_compiled(numba_kernels)
    for _ in range(5):
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        ref.step(params, grads)
        fast.step(fast_params, grads)
    for key in params:
        np.testing.assert_allclose(fast_params[key], params[key], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(fast.state["v"][key], ref.state["v"][key], rtol=1e-13)


# --------------------------------------------------------------------------- checkpoints
@needs_numba
@needs_dinos
def test_checkpoints_move_between_backends(tmp_path) -> None:
    from framework.studies.bench import make_trainer
    from framework.training.checkpoint import load_model

    extra = ["train.steps=4", "train.checkpoint_every=4", "train.eval_every=0",
             "train.sample_every=0"]
    fast = make_trainer("lstm", 8, 3, 6, [*extra, "cell.backend=numba"], tmp_path / "fast",
                        dataset="dinos")
    fast.run()
    model, _, meta = load_model(fast.last_checkpoint)
    assert "backend" not in meta.model.cell_options and model.stack.cell.backend == "numpy"
    for key, value in fast.model.params.items():
        np.testing.assert_array_equal(model.params[key], value)
    # A numpy run resumes the numba run's checkpoint (and the other way round).
    resumed = make_trainer("lstm", 8, 3, 6, [*extra[1:], "train.steps=6"], tmp_path / "slow",
                           dataset="dinos")
    resumed.restore(fast.last_checkpoint)
    assert resumed.step == 4
    resumed.run()
    again = make_trainer("lstm", 8, 3, 6, [*extra[1:], "train.steps=8", "cell.backend=numba"],
                         tmp_path / "again", dataset="dinos")
    again.restore(resumed.last_checkpoint)
    assert again.step == 6
