"""The course's step-by-step API (cells/rnn.py, cells/lstm.py): structure, and agreement with the
fast plugin path on the same parameters (forward and every gradient)."""

from __future__ import annotations

import numpy as np
import pytest

from cells.lstm import (
    GATE_ORDER,
    LSTMCell,
    lstm_backward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_forward,
)
from cells.rnn import RNNCell, rnn_backward, rnn_cell_backward, rnn_cell_forward, rnn_forward
from framework.nn.cell import sigmoid

LSTM_GRAD_KEYS = ["dxt", "da_prev", "dc_prev", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo",
                  "dbo"]


def rnn_params(rs: np.random.RandomState, n_x: int, n_a: int, n_y: int) -> dict:
    return {"Waa": rs.randn(n_a, n_a), "Wax": rs.randn(n_a, n_x), "Wya": rs.randn(n_y, n_a),
            "ba": rs.randn(n_a, 1), "by": rs.randn(n_y, 1)}


def lstm_params(rs: np.random.RandomState, n_x: int, n_a: int, n_y: int) -> dict:
    p = {f"W{g}": rs.randn(n_a, n_a + n_x) for g in "fioc"}
    p.update({f"b{g}": rs.randn(n_a, 1) for g in "fioc"})
    p["Wy"], p["by"] = rs.randn(n_y, n_a), rs.randn(n_y, 1)
    return p


def lstm_to_fast(p: dict, n_a: int) -> dict:
    """Course per-gate matrices over [a_prev; xt] -> fused fast layout [o, f, i, g]."""
    course_key = {"o": "o", "f": "f", "i": "i", "g": "c"}
    W_h = np.concatenate([p[f"W{course_key[g]}"][:, :n_a].T for g in GATE_ORDER], axis=1)
    W_x = np.concatenate([p[f"W{course_key[g]}"][:, n_a:].T for g in GATE_ORDER], axis=1)
    b = np.concatenate([p[f"b{course_key[g]}"].ravel() for g in GATE_ORDER])
    return {"W_x": np.ascontiguousarray(W_x), "W_h": np.ascontiguousarray(W_h), "b": b}


# ------------------------------------------------------------------ structure
def test_rnn_cache_structure_and_shapes() -> None:
    rs = np.random.RandomState(1)
    x, a0 = rs.randn(3, 10, 4), rs.randn(5, 10)
    p = rnn_params(rs, 3, 5, 2)
    a_next, yt, cache = rnn_cell_forward(x[:, :, 0], a0, p)
    assert a_next.shape == (5, 10) and yt.shape == (2, 10)
    assert len(cache) == 4 and cache[1] is a0 and cache[2] is not None and cache[3] is p
    a, y_pred, caches = rnn_forward(x, a0, p)
    assert a.shape == (5, 10, 4) and y_pred.shape == (2, 10, 4)
    assert len(caches) == 2 and caches[1] is x and len(caches[0]) == 4
    g = rnn_cell_backward(rs.randn(5, 10), caches[0][1])
    assert set(g) == {"dxt", "da_prev", "dWax", "dWaa", "dba"}
    assert g["dba"].shape == (5, 1)
    g = rnn_backward(rs.randn(5, 10, 4), caches)
    assert set(g) == {"dx", "da0", "dWax", "dWaa", "dba"}
    assert g["dx"].shape == (3, 10, 4) and g["da0"].shape == (5, 10)


def test_lstm_cache_structure_and_shapes() -> None:
    rs = np.random.RandomState(1)
    x, a0 = rs.randn(3, 10, 7), rs.randn(5, 10)
    p = lstm_params(rs, 3, 5, 2)
    c_prev = rs.randn(5, 10)
    a_next, c_next, yt, cache = lstm_cell_forward(x[:, :, 0], a0, c_prev, p)
    assert a_next.shape == c_next.shape == (5, 10) and yt.shape == (2, 10)
    assert len(cache) == 10
    assert cache[0] is a_next and cache[1] is c_next and cache[2] is a0 and cache[3] is c_prev
    assert cache[8] is not None and cache[9] is p
    ft, it, cct, ot = cache[4:8]
    concat = np.concatenate([a0, x[:, :, 0]])
    np.testing.assert_allclose(ft, 1 / (1 + np.exp(-(p["Wf"] @ concat + p["bf"]))), rtol=1e-14)
    np.testing.assert_allclose(it, 1 / (1 + np.exp(-(p["Wi"] @ concat + p["bi"]))), rtol=1e-14)
    np.testing.assert_allclose(cct, np.tanh(p["Wc"] @ concat + p["bc"]), rtol=1e-14)
    np.testing.assert_allclose(ot, 1 / (1 + np.exp(-(p["Wo"] @ concat + p["bo"]))), rtol=1e-14)
    a, y, c, caches = lstm_forward(x, a0, p)  # note the order: y before c
    assert a.shape == c.shape == (5, 10, 7) and y.shape == (2, 10, 7)
    assert len(caches) == 2 and caches[1] is x and len(caches[0]) == 7
    np.testing.assert_allclose(caches[0][0][3], np.zeros((5, 10)))  # zero initial cell state
    g = lstm_cell_backward(rs.randn(5, 10), rs.randn(5, 10), caches[0][2])
    assert list(g) == LSTM_GRAD_KEYS
    assert g["dxt"].shape == (3, 10) and g["dWf"].shape == (5, 8) and g["dbf"].shape == (5, 1)


def test_lstm_backward_takes_steps_from_da() -> None:
    """The course runs a 7-step forward and a 4-step da: only caches[0..3] are used."""
    rs = np.random.RandomState(1)
    x, a0 = rs.randn(3, 10, 7), rs.randn(5, 10)
    p = lstm_params(rs, 3, 5, 2)
    p["Wy"], p["by"] = np.zeros((2, 5)), np.zeros((2, 1))  # the course test leaves them zero
    _, _, _, caches = lstm_forward(x, a0, p)
    da = rs.randn(5, 10, 4)
    g = lstm_backward(da, caches)
    assert list(g) == ["dx", "da0", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"]
    assert g["dx"].shape == (3, 10, 4) and g["da0"].shape == (5, 10)
    _, _, _, short = lstm_forward(x[:, :, :4], a0, p)
    ref = lstm_backward(da, short)
    for key in g:
        np.testing.assert_allclose(g[key], ref[key], rtol=1e-13, atol=1e-15)


def test_zero_inputs_and_recurrent_weights_give_bias_activations() -> None:
    rs = np.random.RandomState(2)
    p = rnn_params(rs, 3, 4, 2)
    p["Waa"] = np.zeros((4, 4))
    a_next, _, _ = rnn_cell_forward(np.zeros((3, 5)), rs.randn(4, 5), p)
    np.testing.assert_array_equal(a_next, np.tanh(np.broadcast_to(p["ba"], (4, 5))))
    q = lstm_params(rs, 3, 4, 2)
    for g in "fioc":
        q[f"W{g}"] = np.zeros_like(q[f"W{g}"])
    a_next, c_next, _, cache = lstm_cell_forward(np.zeros((3, 5)), rs.randn(4, 5),
                                                 np.zeros((4, 5)), q)
    s = {g: np.broadcast_to(sigmoid(q[f"b{g}"]), (4, 5)) for g in "fio"}
    np.testing.assert_allclose(cache[4], s["f"], rtol=1e-15)
    np.testing.assert_allclose(cache[5], s["i"], rtol=1e-15)
    np.testing.assert_allclose(cache[7], s["o"], rtol=1e-15)
    np.testing.assert_allclose(c_next, s["i"] * np.tanh(q["bc"]), rtol=1e-15)
    np.testing.assert_allclose(a_next, s["o"] * np.tanh(s["i"] * np.tanh(q["bc"])), rtol=1e-15)


def test_course_softmax_uses_global_max_and_columns() -> None:
    rs = np.random.RandomState(0)
    p = rnn_params(rs, 3, 4, 6)
    _, yt, _ = rnn_cell_forward(rs.randn(3, 5), rs.randn(4, 5), p)
    np.testing.assert_allclose(yt.sum(axis=0), np.ones(5), rtol=1e-14)


# ------------------------------------------------------------------ course == fast path
@pytest.mark.parametrize("n_x,n_a,m,T", [(3, 5, 10, 4), (2, 1, 1, 1), (4, 3, 2, 9)])
def test_rnn_course_matches_fast_path(n_x: int, n_a: int, m: int, T: int) -> None:
    rs = np.random.RandomState(5)
    p = rnn_params(rs, n_x, n_a, 2)
    x, a0, da = rs.randn(n_x, m, T), rs.randn(n_a, m), rs.randn(n_a, m, T)
    a, _, caches = rnn_forward(x, a0, p)
    g = rnn_backward(da, caches)

    cell = RNNCell(hidden_size=n_a)
    fast = {"W_x": np.ascontiguousarray(p["Wax"].T), "W_h": np.ascontiguousarray(p["Waa"].T),
            "b": p["ba"].ravel().copy()}
    hs, (hT,), cache = cell.forward(fast, x.transpose(2, 1, 0), (a0.T,), layer_input_is_ids=False)
    grads, dx, (dh0,) = cell.backward(fast, np.ascontiguousarray(da.transpose(2, 1, 0)), None,
                                      cache)
    np.testing.assert_allclose(hs.transpose(2, 1, 0), a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hT.T, a[:, :, -1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx.transpose(2, 1, 0), g["dx"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dh0.T, g["da0"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grads["W_x"].T, g["dWax"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grads["W_h"].T, g["dWaa"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grads["b"], g["dba"].ravel(), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("n_x,n_a,m,T", [(3, 5, 10, 7), (2, 1, 1, 1), (4, 3, 2, 9)])
def test_lstm_course_matches_fast_path(n_x: int, n_a: int, m: int, T: int) -> None:
    rs = np.random.RandomState(6)
    p = lstm_params(rs, n_x, n_a, 2)
    x, a0, da = rs.randn(n_x, m, T), rs.randn(n_a, m), rs.randn(n_a, m, T)
    a, _, c, caches = lstm_forward(x, a0, p)
    g = lstm_backward(da, caches)

    cell = LSTMCell(hidden_size=n_a)
    fast = lstm_to_fast(p, n_a)
    state0 = (np.ascontiguousarray(a0.T), np.zeros((m, n_a)))
    hs, (hT, cT), cache = cell.forward(fast, x.transpose(2, 1, 0), state0,
                                       layer_input_is_ids=False)
    grads, dx, (dh0, _) = cell.backward(fast, np.ascontiguousarray(da.transpose(2, 1, 0)), None,
                                        cache)
    np.testing.assert_allclose(hs.transpose(2, 1, 0), a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cT.T, c[:, :, -1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx.transpose(2, 1, 0), g["dx"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dh0.T, g["da0"], rtol=1e-11, atol=1e-13)
    course_key = {"o": "o", "f": "f", "i": "i", "g": "c"}
    for k, gate in enumerate(GATE_ORDER):
        block = slice(k * n_a, (k + 1) * n_a)
        ck = course_key[gate]
        dW = np.concatenate([grads["W_h"][:, block].T, grads["W_x"][:, block].T], axis=1)
        np.testing.assert_allclose(dW, g[f"dW{ck}"], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(grads["b"][block], g[f"db{ck}"].ravel(), rtol=1e-11,
                                   atol=1e-13)


def test_course_functions_preserve_float32() -> None:
    rs = np.random.RandomState(0)
    p = {k: v.astype(np.float32) for k, v in lstm_params(rs, 3, 4, 2).items()}
    x, a0 = rs.randn(3, 2, 3).astype(np.float32), rs.randn(4, 2).astype(np.float32)
    a, y, c, caches = lstm_forward(x, a0, p)
    assert a.dtype == y.dtype == c.dtype == np.float32
    g = lstm_backward(rs.randn(4, 2, 3).astype(np.float32), caches)
    assert all(v.dtype == np.float32 for v in g.values())
