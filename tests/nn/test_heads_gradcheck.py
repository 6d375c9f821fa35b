"""Finite-difference gradient checks of every registered cell under every head (lm, classify,
forecast), one- and two-layer, bidirectional where the task allows it, on ragged right-padded
batches; plus the stack's backward from the top states and/or the final states.

Same method and metric as tests/nn/test_cells_gradcheck.py (float64 analytic gradients against a
4th-order stencil in extended precision, relative error < 1e-7).  The reference losses are
written here from the formulas, on the model's own forward pass run in extended precision.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from framework.nn.heads import LMHead
from framework.nn.models.many_to_one import SequenceClassifier, SequenceForecaster
from framework.nn.stack import RecurrentStack, build_cell
from framework.plugins import load_plugins
from framework.registry import CELLS
from tests.helpers import LD, TOL, numeric_grad, record_gradcheck, rel_error

load_plugins()
CELL_NAMES = CELLS.names()

V, H, T = 5, 3, 5  # vocabulary / dense input size, hidden size, padded length
LENGTHS = np.array([5, 2, 1, 4])  # ragged, one sequence of full length, one of a single step
LABELS = np.array([2, 0, 1, -1])  # the last row is ignored
CLASS_WEIGHTS = np.array([0.5, 2.0, 1.3])
HORIZON, D = 2, 2  # forecast: horizon steps of D values, dense inputs (T, B, D)

HEAD_CASES = [("lm", False), ("classify", False), ("classify", True), ("forecast", False),
              ("forecast", True)]


def _perturb(params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    for value in params.values():  # nonzero biases, less symmetric weights
        value += rng.normal(0.0, 0.3, value.shape)


def _padded_ids(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
    """Token ids (T, B) with -1 after each sequence's end (and some -1 inside: zero inputs)."""
    ids = rng.integers(-1, V, (T, len(lengths)))
    ids[np.arange(T)[:, None] >= lengths[None, :]] = -1
    return ids


def _padded_dense(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
    """Dense inputs (T, B, D); the padding holds large garbage, which must not matter."""
    x = rng.normal(0.0, 1.0, (T, len(lengths), D))
    x[np.arange(T)[:, None] >= lengths[None, :]] = 7.0
    return x


def _twin(model):
    """The same model with its parameters in extended precision (the cells and heads take the
    dtype from the parameters)."""
    twin = copy.copy(model)
    twin.params = {k: v.astype(LD) for k, v in model.params.items()}
    return twin


def _check_params(grads, twin, loss, cell: str, head: str) -> float:
    worst = 0.0
    for key, value in twin.params.items():
        err = rel_error(grads[key], numeric_grad(loss, value))
        assert err < TOL, f"{cell} {head} {key}: relative error {err:.2e}"
        worst = max(worst, err)
    return worst


# ------------------------------------------------------------------ lm: stack + per-step softmax
def _lm_case(cell: str, layers: int):
    cell_obj = build_cell(cell, H, "xavier")
    stack = RecurrentStack(cell_obj, V, layers, 0.3 if layers > 1 else 0.0)
    head = LMHead(H, V)
    rng = np.random.default_rng(10 + layers)
    params = stack.init_params(rng, "float64")
    params.update(head.init_params(rng, "float64"))
    _perturb(params, rng)
    inputs = _padded_ids(rng, LENGTHS)
    targets = rng.integers(0, V, inputs.shape)
    targets[np.arange(T)[:, None] >= LENGTHS[None, :]] = -1  # padded steps predict nothing
    return stack, head, params, inputs, targets


def _check_lm(cell: str, layers: int) -> float:
    stack, head, params, inputs, targets = _lm_case(cell, layers)
    seed = 5 if layers > 1 else None
    mean = layers == 1  # cover both reductions
    B = inputs.shape[1]
    top, _, tape = stack.forward(params, inputs, stack.zero_state(B, np.float64),
                                 None if seed is None else np.random.default_rng(seed))
    loss_sum, n, grads, dtop = head.loss_and_grads(params, top, targets,
                                                   "mean" if mean else "sum")
    assert n == int((targets >= 0).sum())
    stack_grads, dx, _ = stack.backward(tape, dtop)
    assert dx is None  # token ids have no input gradient
    grads.update(stack_grads)

    p_ld = {k: v.astype(LD) for k, v in params.items()}

    def loss() -> LD:
        top_, _, _ = stack.forward(p_ld, inputs, stack.zero_state(B, LD),
                                   None if seed is None else np.random.default_rng(seed))
        z = head.logits(p_ld, top_)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        t = targets.reshape(-1)
        rows = np.flatnonzero(t >= 0)
        total = -logp[rows, t[rows]].sum()
        return total / len(rows) if mean else total

    np.testing.assert_allclose(loss_sum, float(loss() * (n if mean else 1)), rtol=1e-12)
    worst = 0.0
    for key, value in p_ld.items():
        err = rel_error(grads[key], numeric_grad(loss, value))
        assert err < TOL, f"{cell} lm {key}: relative error {err:.2e}"
        worst = max(worst, err)
    return worst


# ------------------------------------------------------------------ classify and forecast
def _classifier(cell: str, layers: int, bidirectional: bool) -> SequenceClassifier:
    model = SequenceClassifier(cell, V, 3, H, num_layers=layers,
                               dropout=0.3 if layers > 1 else 0.0, dtype="float64",
                               bidirectional=bidirectional)
    rng = np.random.default_rng(20 + layers + 2 * bidirectional)
    _perturb(model.init_params(rng), rng)
    return model


def _forecaster(cell: str, layers: int, bidirectional: bool) -> SequenceForecaster:
    model = SequenceForecaster(cell, D, HORIZON, H, num_layers=layers,
                               dropout=0.3 if layers > 1 else 0.0, dtype="float64",
                               bidirectional=bidirectional)
    rng = np.random.default_rng(30 + layers + 2 * bidirectional)
    _perturb(model.init_params(rng), rng)
    return model


def _check_classify(cell: str, layers: int, bidirectional: bool) -> float:
    model = _classifier(cell, layers, bidirectional)
    inputs = _padded_ids(np.random.default_rng(2), LENGTHS)
    seed = 7 if layers > 1 else None
    mean = layers == 1
    out = model.loss_and_grads(inputs, LENGTHS, LABELS, class_weights=CLASS_WEIGHTS,
                               reduction="mean" if mean else "sum",
                               dropout_rng=None if seed is None else np.random.default_rng(seed))
    assert list(out.grads) == list(model.params)
    twin = _twin(model)
    rows = np.flatnonzero(LABELS >= 0)

    def loss() -> LD:
        feats, _ = twin._encode(inputs, LENGTHS,
                                None if seed is None else np.random.default_rng(seed))
        z = feats @ twin.params["head.W"] + twin.params["head.b"]
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        w = CLASS_WEIGHTS.astype(LD)[LABELS[rows]]
        total = -(w * logp[rows, LABELS[rows]]).sum()
        return total / w.sum() if mean else total

    np.testing.assert_allclose(out.loss, float(loss()), rtol=1e-12)
    np.testing.assert_allclose(out.output.sum(axis=1), 1.0, rtol=1e-13)
    return _check_params(out.grads, twin, loss, cell, "classify")


def _check_forecast(cell: str, layers: int, bidirectional: bool) -> float:
    model = _forecaster(cell, layers, bidirectional)
    rng = np.random.default_rng(3)
    inputs = _padded_dense(rng, LENGTHS)
    targets = rng.normal(0.0, 1.0, (len(LENGTHS), HORIZON, D))
    seed = 8 if layers > 1 else None
    mean = layers == 1
    feats, tape = model._encode(inputs, LENGTHS,
                                None if seed is None else np.random.default_rng(seed))
    out = model.head.loss_and_grads(model.params, feats, targets,
                                    reduction="mean" if mean else "sum")
    enc_grads, dx = model.encoder.backward(model.params, tape, out.dfeats)
    grads = {**enc_grads, **out.grads}
    assert set(grads) == set(model.params)
    # The gradient reaching every padded step is exactly zero.
    pad = np.arange(T)[:, None] >= LENGTHS[None, :]
    assert not np.any(dx[pad]), "nonzero input gradient at padded steps"
    twin = _twin(model)
    x_ld = inputs.astype(LD)

    def loss() -> LD:
        f, _ = twin._encode(x_ld, LENGTHS, None if seed is None else np.random.default_rng(seed))
        pred = f @ twin.params["head.W"] + twin.params["head.b"]
        total = ((pred - targets.reshape(len(LENGTHS), -1).astype(LD)) ** 2).sum()
        return total / pred.size if mean else total

    np.testing.assert_allclose(out.loss, float(loss()), rtol=1e-12)
    worst = _check_params(grads, twin, loss, cell, "forecast")
    err = rel_error(dx, numeric_grad(loss, x_ld))
    assert err < TOL, f"{cell} forecast dx: relative error {err:.2e}"
    return max(worst, err)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(("head", "bidirectional"), HEAD_CASES,
                         ids=[f"{h}-bi" if b else h for h, b in HEAD_CASES])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_head_loss_grads(cell: str, head: str, bidirectional: bool, layers: int) -> None:
    if head == "lm":
        worst = _check_lm(cell, layers)
    elif head == "classify":
        worst = _check_classify(cell, layers, bidirectional)
    else:
        worst = _check_forecast(cell, layers, bidirectional)
    record_gradcheck(f"{cell} x {head}-bi" if bidirectional else f"{cell} x {head}", worst)


# ------------------------------------------------------------------ the stack's own backward
@pytest.mark.parametrize("upstream", ["top", "final", "both"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_stack_backward_from_top_and_final_states(cell: str, layers: int, upstream: str) -> None:
    """loss = <top, R> and/or sum over layers of <final state, R_T>: parameter gradients,
    d loss / d inputs (dense) and d loss / d initial states."""
    B = 3
    stack = RecurrentStack(build_cell(cell, H, "xavier"), D, layers,
                           0.3 if layers > 1 else 0.0, ids=False)
    rng = np.random.default_rng(40 + layers)
    params = stack.init_params(rng, "float64")
    _perturb(params, rng)
    x = rng.normal(0.0, 1.0, (T, B, D))
    state0 = [tuple(rng.normal(0.0, 0.5, (B, H)) for _ in s)
              for s in stack.zero_state(B, np.float64)]
    R = rng.normal(0.0, 1.0, (T, B, H)) if upstream != "final" else None
    RT = ([tuple(rng.normal(0.0, 1.0, (B, H)) for _ in s) for s in state0]
          if upstream != "top" else None)
    seed = 9 if layers > 1 else None

    def drop():
        return None if seed is None else np.random.default_rng(seed)

    _, _, tape = stack.forward(params, x, state0, drop())
    grads, dx, dstate0 = stack.backward(tape, None if R is None else R.copy(), RT)

    p_ld = {k: v.astype(LD) for k, v in params.items()}
    x_ld = x.astype(LD)
    s_ld = [tuple(s.astype(LD) for s in st) for st in state0]

    def loss() -> LD:
        top, sT, _ = stack.forward(p_ld, x_ld, s_ld, drop())
        total = LD(0) if R is None else (top * R).sum()
        if RT is not None:
            for layer_s, layer_r in zip(sT, RT, strict=True):
                total += sum((s * r).sum() for s, r in zip(layer_s, layer_r, strict=True))
        return total

    worst = 0.0
    for key, value in p_ld.items():
        worst = max(worst, rel_error(grads[key], numeric_grad(loss, value)))
    worst = max(worst, rel_error(dx, numeric_grad(loss, x_ld)))
    for layer_ds, layer_s in zip(dstate0, s_ld, strict=True):
        for ds, s in zip(layer_ds, layer_s, strict=True):
            worst = max(worst, rel_error(ds, numeric_grad(loss, s)))
    assert worst < TOL, f"{cell} stack ({upstream}): relative error {worst:.2e}"
    record_gradcheck(f"{cell} x stack-{upstream}", worst)

