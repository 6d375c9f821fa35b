"""CharRNN and the fast cell plugins: determinism, dtypes, state carry, ignored targets,
course initialisation and the Dinosaurus Island math."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from framework.errors import ConfigError, DataError
from framework.nn.cell import Cell, sigmoid
from framework.nn.models.language_model import CharRNN
from framework.plugins import load_plugins
from framework.registry import CELLS
from framework.studies.coursebench import course_style_forward_backward

load_plugins()
CELL_NAMES = CELLS.names()
ROOT = Path(__file__).resolve().parents[2]


def _model(cell: str, dtype: str = "float64", layers: int = 2, dropout: float = 0.0,
           V: int = 7, H: int = 5, seed: int = 0) -> CharRNN:
    m = CharRNN(cell, V, H, num_layers=layers, dropout=dropout, dtype=dtype)
    m.init_params(np.random.default_rng(seed))
    return m


def _batch(V: int, T: int, B: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(-1, V, (T, B)), rng.integers(0, V, (T, B))


# ------------------------------------------------------------------ determinism and dtypes
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_seeded_runs_are_bit_identical(cell: str) -> None:
    runs = []
    for _ in range(2):
        m = _model(cell, "float32", dropout=0.25, seed=3)
        inputs, targets = _batch(7, 9, 4)
        runs.append(m.loss_and_grads(inputs, targets, None,
                                     dropout_rng=np.random.default_rng(9)))
    (l1, n1, g1, s1), (l2, n2, g2, s2) = runs
    assert l1 == l2 and n1 == n2
    for key in g1:
        assert np.array_equal(g1[key], g2[key]), key
    for a, b in zip(s1, s2, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_dtype_is_preserved_end_to_end(cell: str, dtype: str) -> None:
    m = _model(cell, dtype, dropout=0.2)
    assert all(v.dtype == dtype for v in m.params.values())
    inputs, targets = _batch(7, 6, 3)
    _, _, grads, stateT = m.loss_and_grads(inputs, targets, None,
                                           dropout_rng=np.random.default_rng(0))
    assert set(grads) == set(m.params)
    for key, g in grads.items():
        assert g.dtype == dtype and g.shape == m.params[key].shape, key
    assert all(s.dtype == dtype for layer in stateT for s in layer)
    _, _, stateE = m.loss(inputs, targets, stateT)
    assert all(s.dtype == dtype for layer in stateE for s in layer)
    logits, _ = m.step(np.array([0, 3, -1]), stateT)
    assert logits.dtype == np.float64 and logits.shape == (3, 7)
    # cell level, dense input: every output including dx and dstate0
    cell_obj = m.cell
    p = {k: v for k, v in cell_obj.init_params(4, np.random.default_rng(0), dtype).items()}
    x = np.random.default_rng(1).normal(size=(5, 3, 4)).astype(dtype)
    hs, sT, cache = cell_obj.forward(p, x, None, layer_input_is_ids=False)
    g, dx, ds0 = cell_obj.backward(p, np.ones_like(hs), tuple(np.ones_like(s) for s in sT), cache)
    assert hs.dtype == dtype and dx.dtype == dtype
    assert all(s.dtype == dtype for s in (*sT, *ds0, *g.values()))


# ------------------------------------------------------------------ state carry
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_state_carry_model_level(cell: str) -> None:
    m = _model(cell)
    inputs, targets = _batch(7, 10, 3)
    full, n_full, _, sT_full = m.loss_and_grads(inputs, targets, None, reduction="sum")
    l1, n1, _, s_mid = m.loss_and_grads(inputs[:4], targets[:4], None, reduction="sum")
    l2, n2, _, sT = m.loss_and_grads(inputs[4:], targets[4:], s_mid, reduction="sum")
    assert n1 + n2 == n_full
    np.testing.assert_allclose(l1 + l2, full, rtol=1e-13)
    for a, b in zip(sT, sT_full, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_state_carry_cell_level_forward_and_backward(cell: str) -> None:
    """Two chunks with carried state (and dstate carried back) == one long sequence."""
    obj = CELLS.build({"name": cell, "hidden_size": 4})
    rng = np.random.default_rng(2)
    p = obj.init_params(3, rng, "float64")
    x = rng.normal(size=(9, 2, 3))
    s0 = tuple(rng.normal(size=(2, 4)) for _ in obj.zero_state(2, np.float64))
    dhs = rng.normal(size=(9, 2, 4))
    dT = tuple(rng.normal(size=(2, 4)) for _ in s0)

    hs, sT, cache = obj.forward(p, x, s0, layer_input_is_ids=False)
    g, dx, ds0 = obj.backward(p, dhs, dT, cache)

    hs1, s_mid, c1 = obj.forward(p, x[:4], s0, layer_input_is_ids=False)
    hs2, sT2, c2 = obj.forward(p, x[4:], s_mid, layer_input_is_ids=False)
    g2, dx2, ds_mid = obj.backward(p, dhs[4:], dT, c2)
    g1, dx1, ds0_1 = obj.backward(p, dhs[:4], ds_mid, c1)

    np.testing.assert_allclose(np.concatenate([hs1, hs2]), hs, rtol=1e-13, atol=1e-15)
    for a, b in zip(sT2, sT, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.concatenate([dx1, dx2]), dx, rtol=1e-12, atol=1e-14)
    for a, b in zip(ds0_1, ds0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for key in g:
        np.testing.assert_allclose(g1[key] + g2[key], g[key], rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ ignored targets
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_ignored_targets_add_nothing(cell: str) -> None:
    m = _model(cell, layers=2)
    inputs, targets = _batch(7, 6, 2)
    ref = m.loss_and_grads(inputs[:, :1], targets[:, :1], None, reduction="sum")
    # pad the time axis (after the sequence) and add a batch column that is entirely ignored
    rng = np.random.default_rng(5)
    pin = rng.integers(-1, 7, (9, 2))
    ptg = np.full((9, 2), -1)
    pin[:6, 0], ptg[:6, 0] = inputs[:, 0], targets[:, 0]
    got = m.loss_and_grads(pin, ptg, None, reduction="sum")
    assert got[1] == ref[1] == 6
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-13)
    for key in ref[2]:
        np.testing.assert_allclose(got[2][key], ref[2][key], rtol=1e-12, atol=1e-15)
    mean = m.loss_and_grads(pin, ptg, None, reduction="mean")
    for key in ref[2]:
        np.testing.assert_allclose(mean[2][key], ref[2][key] / 6, rtol=1e-12, atol=1e-15)
    # nothing counted at all: zero loss, zero gradients
    none = m.loss_and_grads(pin, np.full((9, 2), -1), None)
    assert none[0] == 0.0 and none[1] == 0
    assert all(not np.any(g) for g in none[2].values())


# ------------------------------------------------------------------ fast cells: structure
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_zero_input_and_recurrent_weights_give_bias_activations(cell: str) -> None:
    obj = CELLS.build({"name": cell, "hidden_size": 3})
    rng = np.random.default_rng(0)
    p = obj.init_params(2, rng, "float64")
    p["W_h"][...] = 0
    p["b"][...] = rng.normal(size=p["b"].shape)
    hs, _, _ = obj.forward(p, np.zeros((2, 4, 2)), None, layer_input_is_ids=False)
    b = p["b"].reshape(-1, 3)
    expected = {
        "rnn": lambda: np.tanh(b[0]),
        # fused order [o, f, i, g], zero initial cell state
        "lstm": lambda: sigmoid(b[0]) * np.tanh(sigmoid(b[2]) * np.tanh(b[3])),
        # [r, z, n], zero initial state: h = (1 - z) * n
        "gru": lambda: (1 - sigmoid(b[1])) * np.tanh(b[2]),
    }
    if cell in expected:
        np.testing.assert_allclose(hs[0], np.broadcast_to(expected[cell](), (4, 3)), rtol=1e-14)
    # ids input: -1 is a zero input vector, so it gives the same first step
    hs_ids, _, _ = obj.forward(p, np.full((2, 4), -1), None, layer_input_is_ids=True)
    np.testing.assert_allclose(hs_ids, hs, rtol=1e-15)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_schema_rejects_out_of_range_values(cell: str) -> None:
    schema = CELLS.schema(cell)
    with pytest.raises(ValueError, match="hidden_size"):
        schema(hidden_size=0)
    with pytest.raises(ValueError, match="init"):
        schema(init="uniform")
    with pytest.raises(ConfigError):
        CELLS.build({"name": cell, "hidden_size": -3})


def test_a_cell_without_the_course_hook_refuses_course_init_in_one_line() -> None:
    from tests.helpers import isolated_registries

    with isolated_registries():
        @CELLS.register("hookless")
        class Hookless(Cell):  # forward/backward only: no course_blocks
            pass

        assert CELLS.build({"name": "hookless", "hidden_size": 3}).init == "xavier"
        with pytest.raises(ConfigError, match=r"^cell 'hookless' has no course initialisation: "
                                              r"it does not define the optional hook "
                                              r"course_blocks\(input_size, rng\); use "
                                              r"cell.init=xavier$"):
            CELLS.build({"name": "hookless", "hidden_size": 3, "init": "course"})


def test_lstm_forget_bias_option() -> None:
    with pytest.raises(ValueError, match="forget_bias"):
        CELLS.schema("lstm")(forget_bias=float("nan"))
    obj = CELLS.build({"name": "lstm", "hidden_size": 2, "forget_bias": 2.5})
    b = obj.init_params(3, np.random.default_rng(0), "float32")["b"].reshape(4, 2)
    np.testing.assert_array_equal(b[1], [2.5, 2.5])  # block 1 is the forget gate
    assert not b[[0, 2, 3]].any()


def test_xavier_init_shapes_and_orthogonal_recurrence() -> None:
    obj = CELLS.build({"name": "gru", "hidden_size": 6})
    p = obj.init_params(4, np.random.default_rng(0), "float64")
    assert p["W_x"].shape == (4, 18) and p["W_h"].shape == (6, 18) and p["b"].shape == (18,)
    for k in range(3):
        block = p["W_h"][:, 6 * k : 6 * (k + 1)]
        np.testing.assert_allclose(block.T @ block, np.eye(6), atol=1e-12)
    assert np.abs(p["W_x"]).max() <= np.sqrt(6 / 10)


def test_bad_ids_are_one_line_data_errors() -> None:
    m = _model("rnn")
    with pytest.raises(DataError, match="outside"):
        m.loss_and_grads(np.array([[7]]), np.array([[0]]), None)
    with pytest.raises(DataError, match="outside"):
        m.loss(np.array([[0]]), np.array([[-2]]), None)
    with pytest.raises(DataError, match="same"):
        m.loss(np.zeros((2, 1), int), np.zeros((3, 1), int), None)


def test_dropout_only_in_training() -> None:
    m = _model("lstm", dropout=0.5)
    inputs, targets = _batch(7, 5, 2)
    ev = m.loss(inputs, targets, None)[0]
    assert m.loss_and_grads(inputs, targets, None)[0] == pytest.approx(ev, rel=1e-14)
    tr = m.loss_and_grads(inputs, targets, None, dropout_rng=np.random.default_rng(0))[0]
    assert tr != pytest.approx(ev, rel=1e-6)


def test_step_matches_sequence_forward() -> None:
    m = _model("gru", layers=2)
    ids = np.array([[1, 2], [3, -1], [0, 4]])
    state = m.zero_state(2)
    logits = []
    for t in range(3):
        lg, state = m.step(ids[t], state)
        logits.append(lg)
    top, _, _ = m._forward(ids, m.zero_state(2), None)
    np.testing.assert_allclose(np.concatenate(logits), m._logits(top), rtol=1e-13)


# ------------------------------------------------------------------ course init and Dinosaurus
def test_course_init_matches_seeded_randn_draws() -> None:
    m = CharRNN("rnn", 27, 50, init="course", dtype="float64")
    p = m.init_params(np.random.RandomState(1))
    np.random.seed(1)
    Wax = np.random.randn(50, 27) * 0.01
    Waa = np.random.randn(50, 50) * 0.01
    Wya = np.random.randn(27, 50) * 0.01
    assert np.array_equal(p["layers.0.W_x"], Wax.T)
    assert np.array_equal(p["layers.0.W_h"], Waa.T)
    assert np.array_equal(p["out.W"], Wya.T)
    assert not p["layers.0.b"].any() and not p["out.b"].any()
    m32 = CharRNN("rnn", 27, 50, init="course", dtype="float32")
    p32 = m32.init_params(np.random.RandomState(1))
    assert np.array_equal(p32["layers.0.W_x"], Wax.T.astype(np.float32))


def _dino_reference(X, Y, a0, P):
    """The course's rnn_forward / rnn_backward, written from the formulas (column layout)."""
    return course_style_forward_backward(X, Y, a0, P)


def test_dinosaurus_rnn_math_matches_loss_and_grads() -> None:
    m = CharRNN("rnn", 27, 50, init="course", dtype="float64")
    m.init_params(np.random.RandomState(1))
    rs = np.random.RandomState(7)
    m.params["layers.0.b"] += rs.randn(50) * 0.1  # exercise the bias paths too
    m.params["out.b"] += rs.randn(27) * 0.1
    a_prev = rs.randn(50, 1) * 0.5  # the course carries the state across names
    name = [20, 21, 18, 9, 1, 19, 1, 21, 18, 21, 19]  # "turiasaurus"
    X = [None, *name]
    Y = [*name, 0]
    P = {"Wax": m.params["layers.0.W_x"].T, "Waa": m.params["layers.0.W_h"].T,
         "Wya": m.params["out.W"].T, "b": m.params["layers.0.b"][:, None],
         "by": m.params["out.b"][:, None]}
    loss_ref, g_ref, a_last = _dino_reference(X, Y, a_prev, P)

    inputs = np.array([[-1 if v is None else v] for v in X])
    targets = np.array([[v] for v in Y])
    loss, n, grads, stateT = m.loss_and_grads(inputs, targets, [(a_prev.T,)], reduction="sum")
    assert n == 12
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    np.testing.assert_allclose(grads["layers.0.W_x"].T, g_ref["Wax"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["layers.0.W_h"].T, g_ref["Waa"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["out.W"].T, g_ref["Wya"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["layers.0.b"], g_ref["b"].ravel(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["out.b"], g_ref["by"].ravel(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stateT[0][0], a_last.T, rtol=1e-12, atol=1e-15)
