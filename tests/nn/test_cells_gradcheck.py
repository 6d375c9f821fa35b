"""Finite-difference gradient checks of every registered cell (new cell files are picked up
automatically: the tests are parametrised over CELLS.names() after load_plugins()).

Analytic gradients are computed in float64.  The numeric reference is computed in extended
precision (np.longdouble, 64-bit mantissa) with a fourth-order central difference: in plain
float64 a central difference has an absolute noise floor of ~1e-10 (rounding of the loss
divided by eps), which makes a 1e-7 relative check meaningless for small gradient entries.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from framework.nn.models.language_model import CharRNN
from framework.plugins import load_plugins
from framework.registry import CELLS
from tests.helpers import LD, TOL, numeric_grad, record_gradcheck, rel_error

load_plugins()
CELL_NAMES = CELLS.names()
# Every cell is checked on both backends (cell.backend): the *_numba tests repeat each check
# with the compiled kernels, which need the "fast" extra.
needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason='cell.backend=numba needs numba: pip install -e ".[fast]"')

# (vocab, hidden, T, batch)
SHAPES = {
    "base": (5, 4, 6, 3),
    "hidden1": (5, 1, 5, 2),
    "batch1": (5, 3, 4, 1),
    "one_step": (5, 3, 1, 3),
    "steps37": (4, 3, 37, 2),
    "vocab2": (2, 3, 5, 2),
}

def _make_model(cell: str, V: int, H: int, layers: int, seed: int,
                backend: str = "numpy") -> CharRNN:
    options = {} if backend == "numpy" else {"backend": backend}
    model = CharRNN(cell, V, H, num_layers=layers, dropout=0.3 if layers > 1 else 0.0,
                    dtype="float64", cell_options=options)
    rng = np.random.default_rng(seed)
    model.init_params(rng)
    for value in model.params.values():  # nonzero biases, less symmetric weights
        value += rng.normal(0.0, 0.3, value.shape)
    return model


def _longdouble_copy(model: CharRNN) -> CharRNN:
    twin = CharRNN(model.cell, model.vocab_size, model.hidden_size, model.num_layers,
                   model.dropout, dtype="float64")
    twin.dtype = np.dtype(LD)  # test-only: the numeric reference runs in extended precision
    twin.params = {k: v.astype(LD) for k, v in model.params.items()}
    return twin


def _exact_loss(model: CharRNN, inputs, targets, state0, seed: int, mean: bool) -> LD:
    """The model's loss recomputed in the model's (extended) precision from its forward pass."""
    top, _, _ = model._forward(inputs, state0, np.random.default_rng(seed) if seed else None)
    logits = model._logits(top)
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    t = targets.reshape(-1)
    rows = np.flatnonzero(t >= 0)
    loss = -logp[rows, t[rows]].sum()
    return loss / len(rows) if mean else loss


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_charrnn_loss_grads(cell: str, layers: int, shape: str) -> None:
    _check_charrnn_loss_grads(cell, layers, shape, "numpy")


@needs_numba
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_charrnn_loss_grads_numba(cell: str, layers: int, shape: str) -> None:
    _check_charrnn_loss_grads(cell, layers, shape, "numba")


def _check_charrnn_loss_grads(cell: str, layers: int, shape: str, backend: str) -> None:
    V, H, T, B = SHAPES[shape]
    model = _make_model(cell, V, H, layers, seed=T * 7 + H, backend=backend)
    rng = np.random.default_rng(1)
    inputs = rng.integers(-1, V, (T, B))
    targets = rng.integers(0, V, (T, B))
    targets[rng.random((T, B)) < 0.25] = -1
    targets[0, 0] = 0  # at least one counted token
    state0 = [tuple(rng.normal(0.0, 0.5, (B, H)) for _ in s) for s in model.zero_state(B)]
    seed = 11 if layers > 1 else 0
    mean = layers == 1  # cover both reductions
    _, n_tokens, grads, _ = model.loss_and_grads(
        inputs, targets, state0, reduction="mean" if mean else "sum",
        dropout_rng=np.random.default_rng(seed) if seed else None,
    )
    assert n_tokens == int((targets >= 0).sum())
    twin = _longdouble_copy(model)
    state_ld = [tuple(s.astype(LD) for s in st) for st in state0]
    worst = 0.0
    for key, value in twin.params.items():
        num = numeric_grad(lambda: _exact_loss(twin, inputs, targets, state_ld, seed, mean), value)
        err = rel_error(grads[key], num)
        assert err < TOL, f"{cell} {key}: relative error {err:.2e}"
        worst = max(worst, err)
    record_gradcheck(cell if backend == "numpy" else f"{cell} ({backend})", worst)


CELL_SHAPES = {"base": (4, 3, 5, 3), "hidden1": (3, 1, 4, 2), "one_step": (2, 3, 1, 2)}


@pytest.mark.parametrize("shape", list(CELL_SHAPES), ids=list(CELL_SHAPES))
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_cell_backward_dense(cell: str, shape: str) -> None:
    """Cell-level check with dense input: param grads, dx, dstate0 and a nonzero dstateT."""
    _check_cell_backward_dense(cell, shape, "numpy")


@needs_numba
@pytest.mark.parametrize("shape", list(CELL_SHAPES), ids=list(CELL_SHAPES))
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_cell_backward_dense_numba(cell: str, shape: str) -> None:
    """The same with the compiled kernels (the extended-precision reference runs the NumPy
    path: the kernels are float32/float64 only)."""
    _check_cell_backward_dense(cell, shape, "numba")


def _check_cell_backward_dense(cell: str, shape: str, backend: str) -> None:
    D, H, T, B = CELL_SHAPES[shape]
    obj = CELLS.build({"name": cell, "hidden_size": H, "backend": backend})
    rng = np.random.default_rng(3)
    params = {k: v + rng.normal(0, 0.3, v.shape)
              for k, v in obj.init_params(D, rng, "float64").items()}
    x = rng.normal(0, 1.0, (T, B, D))
    state0 = tuple(rng.normal(0, 0.5, (B, H)) for _ in obj.zero_state(B, np.float64))
    R = rng.normal(0, 1.0, (T, B, H))
    RT = tuple(rng.normal(0, 1.0, (B, H)) for _ in state0)

    hs, _, cache = obj.forward(params, x, state0, layer_input_is_ids=False)
    grads, dx, dstate0 = obj.backward(params, R, RT, cache)

    p_ld = {k: v.astype(LD) for k, v in params.items()}
    x_ld = x.astype(LD)
    s_ld = [s.astype(LD) for s in state0]

    def loss() -> LD:
        hs_, sT, _ = obj.forward(p_ld, x_ld, tuple(s_ld), layer_input_is_ids=False)
        return (hs_ * R).sum() + sum((s * r).sum() for s, r in zip(sT, RT, strict=True))

    worst = 0.0
    for key in params:
        worst = max(worst, rel_error(grads[key], numeric_grad(loss, p_ld[key])))
    worst = max(worst, rel_error(dx, numeric_grad(loss, x_ld)))
    for ds, s in zip(dstate0, s_ld, strict=True):
        worst = max(worst, rel_error(ds, numeric_grad(loss, s)))
    assert worst < TOL, f"{cell}: relative error {worst:.2e}"
    record_gradcheck(cell if backend == "numpy" else f"{cell} ({backend})", worst)

