"""LSTM cell (the course's formulas: update gate i, forget gate f, output gate o, candidate g).

The four gates are fused: ``W_x`` (D, 4H), ``W_h`` (H, 4H), ``b`` (4H,) with the gate blocks in
the order **[o, f, i, g]**.  That order puts the three sigmoid gates side by side (one sigmoid
call per step) and the three gates whose gradient is ``dc * factor`` (f, i, g) side by side (one
broadcast multiply per step in the backward pass).

The pointwise math is written once (``lstm_gates_forward``, ``lstm_backward_factors``,
``lstm_backward_step``) on row-layout arrays whose last axis holds the fused gates.  The fast
plugin :class:`LSTMCell` calls it per step on a batch; the course API of spec §1.4/§1.5 (column
layout, per-gate matrices ``Wf, Wi, Wc, Wo`` over ``concat = [a_prev; xt]``) computes each gate's
pre-activation in the course's order and then calls the same functions on transposed views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.cell import Cell, check_cell_config, course_normal, course_softmax, sigmoid
from framework.registry import CELLS

GATE_ORDER = ("o", "f", "i", "g")  # block k of the fused arrays holds gate GATE_ORDER[k]
_COURSE_DRAW_ORDER = ("f", "i", "o", "g")  # the course draws Wf, Wi, Wo, Wc in this order


# --------------------------------------------------------------------------- pointwise math
def _blocks(a: np.ndarray, n: int) -> np.ndarray:
    """View (..., n*H) as (..., n, H); refuses to silently copy (writes would be lost)."""
    if not a.flags.c_contiguous:
        raise ValueError("fused gate arrays must be C-contiguous")
    return a.reshape(a.shape[:-1] + (n, a.shape[-1] // n))


def lstm_gates_forward(
    z: np.ndarray,
    c_prev: np.ndarray,
    c_out: np.ndarray,
    tc_out: np.ndarray,
    h_out: np.ndarray,
) -> None:
    """Activate the fused pre-activations ``z`` (..., 4H) in place and compute the new state.

    ft = σ(zf), it = σ(zi), ot = σ(zo), g = tanh(zg);
    c = ft*c_prev + it*g; tc = tanh(c); h = ot*tc.
    """
    H = c_prev.shape[-1]
    sig = z[..., : 3 * H]
    sigmoid(sig, out=sig)
    g = z[..., 3 * H :]
    np.tanh(g, out=g)
    o, f, i = z[..., :H], z[..., H : 2 * H], z[..., 2 * H : 3 * H]
    np.multiply(f, c_prev, out=c_out)
    np.multiply(i, g, out=h_out)  # h_out doubles as scratch until the last line
    np.add(c_out, h_out, out=c_out)
    np.tanh(c_out, out=tc_out)
    np.multiply(o, tc_out, out=h_out)


def lstm_backward_factors(
    gates: np.ndarray,
    c_prev: np.ndarray,
    tc: np.ndarray,
    d_out: np.ndarray,
    e_out: np.ndarray,
) -> None:
    """Local derivatives that do not depend on the upstream gradient (any number of steps).

    d_out (..., 4H) = [o(1-o)·tc, f(1-f)·c_prev, i(1-i)·g, (1-g²)·i] and e_out = o·(1-tc²), so
    that one step back is dc_tot = dc + dh·e, dz_o = dh·d_o, dz_{f,i,g} = dc_tot·d_{f,i,g}.
    """
    H = tc.shape[-1]
    sig, dsig = gates[..., : 3 * H], d_out[..., : 3 * H]
    np.subtract(1, sig, out=dsig)
    np.multiply(dsig, sig, out=dsig)  # σ' = s(1-s) for o, f, i together
    o, i, g = gates[..., :H], gates[..., 2 * H : 3 * H], gates[..., 3 * H :]
    d_o, d_f, d_i, d_g = (d_out[..., k * H : (k + 1) * H] for k in range(4))
    np.multiply(d_o, tc, out=d_o)
    np.multiply(d_f, c_prev, out=d_f)
    np.multiply(d_i, g, out=d_i)
    np.square(g, out=d_g)
    np.subtract(1, d_g, out=d_g)
    np.multiply(d_g, i, out=d_g)
    np.square(tc, out=e_out)
    np.subtract(1, e_out, out=e_out)
    np.multiply(e_out, o, out=e_out)


def lstm_backward_step(
    dh: np.ndarray,
    dc: np.ndarray,
    gates: np.ndarray,
    d: np.ndarray,
    e: np.ndarray,
    dz: np.ndarray,
) -> None:
    """One step back.  ``dh``: total gradient reaching h_t.  ``dc``: gradient reaching c_t from
    the future, updated IN PLACE to the gradient wrt c_{t-1}.  ``dz`` (..., 4H) receives the
    pre-activation gradients of the four gates."""
    H = dh.shape[-1]
    dz_o = dz[..., :H]
    np.multiply(dh, e, out=dz_o)  # dz_o is scratch for dh*e here
    np.add(dc, dz_o, out=dc)  # dc_tot = dc_next + dh*o*(1-tc²)
    np.multiply(dh, d[..., :H], out=dz_o)
    np.multiply(dc[..., None, :], _blocks(d, 4)[..., 1:, :], out=_blocks(dz, 4)[..., 1:, :])
    np.multiply(dc, gates[..., H : 2 * H], out=dc)  # dc_prev = dc_tot * f


# --------------------------------------------------------------------------- fast plugin
@dataclass
class LSTMConfig:
    name: str = "lstm"
    hidden_size: int = 128
    init: str = "xavier"
    forget_bias: float = 1.0

    def __post_init__(self) -> None:
        check_cell_config(self.hidden_size, self.init)
        if not math.isfinite(self.forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {self.forget_bias}")


@CELLS.register("lstm", schema=LSTMConfig)
class LSTMCell(Cell):
    """LSTM; four gate blocks [o, f, i, g], state (h, c)."""

    name = "lstm"
    gates = 4
    state_size = 2

    def __init__(
        self, hidden_size: int, init: str = "xavier", forget_bias: float = 1.0, **options: Any
    ) -> None:
        super().__init__(hidden_size, init, **options)
        self.forget_bias = float(forget_bias)

    def _course_blocks(self, input_size: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        # Course draw order f, i, o, c of (n_a, n_a + n_x) matrices over concat = [a_prev; xt].
        H = self.hidden_size
        W_x = np.empty((input_size, 4 * H))
        W_h = np.empty((H, 4 * H))
        for gate in _COURSE_DRAW_ORDER:
            W = course_normal(rng, (H, H + input_size))
            k = GATE_ORDER.index(gate)
            W_h[:, k * H : (k + 1) * H] = W[:, :H].T
            W_x[:, k * H : (k + 1) * H] = W[:, H:].T
        return W_x, W_h

    def _initial_bias(self) -> np.ndarray:
        # forget_bias (both init schemes) keeps the cell state flowing early in training.
        b = np.zeros(4 * self.hidden_size)
        k = GATE_ORDER.index("f")
        b[k * self.hidden_size : (k + 1) * self.hidden_size] = self.forget_bias
        return b

    def forward(
        self,
        params: dict[str, np.ndarray],
        x: np.ndarray,
        state0: tuple | None,
        *,
        layer_input_is_ids: bool,
    ) -> tuple[np.ndarray, tuple, Any]:
        ids = layer_input_is_ids
        x = self.prepare_input(params, x, ids)
        W_h = params["W_h"]
        dt = W_h.dtype
        T, B = x.shape[:2]
        H = self.hidden_size
        h0, c0 = self.initial_state(state0, B, dt)
        Hs = np.empty((T + 1, B, H), dtype=dt)
        C = np.empty((T + 1, B, H), dtype=dt)
        TC = np.empty((T, B, H), dtype=dt)
        Hs[0] = h0
        C[0] = c0
        G = self.project_inputs(params, x, ids)  # becomes the gate activations in place
        rec = self._ws.get("rec", (B, 4 * H), dt)
        with np.errstate(over="ignore"):  # exp overflow in σ of very negative inputs -> 0
            for t in range(T):
                np.matmul(Hs[t], W_h, out=rec)  # one fused recurrent matmul for 4 gates
                z = G[t]
                np.add(z, rec, out=z)
                lstm_gates_forward(z, C[t], C[t + 1], TC[t], Hs[t + 1])
        hs = Hs[1:]
        hs.flags.writeable = False
        hT, cT = Hs[T], C[T]
        hT.flags.writeable = False
        cT.flags.writeable = False
        return hs, (hT, cT), (x, ids, Hs, C, G, TC)

    def backward(
        self,
        params: dict[str, np.ndarray],
        dhs: np.ndarray | None,
        dstateT: tuple | None,
        cache: Any,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple]:
        x, ids, Hs, C, G, TC = cache
        W_h = params["W_h"]
        dt = W_h.dtype
        T, B, H = TC.shape
        D = self._ws.get("D", (T, B, 4 * H), dt)
        E = self._ws.get("E", (T, B, H), dt)
        lstm_backward_factors(G, C[:-1], TC, D, E)  # vectorised over all steps, before the loop
        dZ = self._ws.get("dZ", (T, B, 4 * H), dt)
        dh = self._ws.get("dh", (B, H), dt)
        dh_next = np.zeros((B, H), dtype=dt)
        dc = np.zeros((B, H), dtype=dt)
        if dstateT is not None:
            if dstateT[0] is not None:
                dh_next[...] = dstateT[0]
            if dstateT[1] is not None:
                dc[...] = dstateT[1]
        W_hT = W_h.T
        for t in range(T - 1, -1, -1):
            if dhs is None:
                dh[...] = dh_next
            else:
                np.add(dhs[t], dh_next, out=dh)
            lstm_backward_step(dh, dc, G[t], D[t], E[t], dZ[t])
            np.matmul(dZ[t], W_hT, out=dh_next)
        dW_h = np.matmul(Hs[:-1].reshape(T * B, H).T, dZ.reshape(T * B, 4 * H))
        dW_x, db, dx = self.input_grads(params, dZ, x, ids)
        return {"W_x": dW_x, "W_h": dW_h, "b": db}, dx, (dh_next, dc)


# --------------------------------------------------------------------------- course API (§1)
def _fuse(o: np.ndarray, f: np.ndarray, i: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Column-layout gate arrays (n_a, m) -> one row-layout fused array (m, 4 n_a)."""
    return np.concatenate([o.T, f.T, i.T, g.T], axis=1)


def _unfuse(z: np.ndarray) -> list[np.ndarray]:
    """Inverse of :func:`_fuse`: [o, f, i, g] in column layout (contiguous copies)."""
    H = z.shape[1] // 4
    return [np.ascontiguousarray(z[:, k * H : (k + 1) * H].T) for k in range(4)]


def lstm_cell_forward(
    xt: np.ndarray, a_prev: np.ndarray, c_prev: np.ndarray, parameters: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """One course LSTM step; returns (a_next, c_next, yt_pred, cache) with the 10-tuple cache
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)."""
    p = parameters
    concat = np.concatenate((a_prev, xt), axis=0)
    z = _fuse(
        np.dot(p["Wo"], concat) + p["bo"],
        np.dot(p["Wf"], concat) + p["bf"],
        np.dot(p["Wi"], concat) + p["bi"],
        np.dot(p["Wc"], concat) + p["bc"],
    )
    m, n_a = a_prev.shape[1], a_prev.shape[0]
    dt = z.dtype
    c_r, tc_r, h_r = (np.empty((m, n_a), dtype=dt) for _ in range(3))
    with np.errstate(over="ignore"):
        lstm_gates_forward(z, np.ascontiguousarray(c_prev.T), c_r, tc_r, h_r)
    ot, ft, it, cct = _unfuse(z)
    a_next = np.ascontiguousarray(h_r.T)
    c_next = np.ascontiguousarray(c_r.T)
    yt_pred = course_softmax(np.dot(p["Wy"], a_next) + p["by"])
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)
    return a_next, c_next, yt_pred, cache


def lstm_forward(
    x: np.ndarray, a0: np.ndarray, parameters: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """Course LSTM over x (n_x, m, T_x) from a zero cell state; returns (a, y, c, caches)."""
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wy"].shape
    dt = np.result_type(x, a0, parameters["Wy"])
    a = np.zeros((n_a, m, T_x), dtype=dt)
    c = np.zeros((n_a, m, T_x), dtype=dt)
    y = np.zeros((n_y, m, T_x), dtype=dt)
    a_next = a0
    c_next = np.zeros((n_a, m), dtype=dt)
    caches = []
    for t in range(T_x):
        a_next, c_next, yt, cache = lstm_cell_forward(x[:, :, t], a_next, c_next, parameters)
        a[:, :, t] = a_next
        c[:, :, t] = c_next
        y[:, :, t] = yt
        caches.append(cache)
    return a, y, c, (caches, x)


def lstm_cell_backward(
    da_next: np.ndarray, dc_next: np.ndarray, cache: tuple
) -> dict[str, np.ndarray]:
    """Course LSTM cell backward; keys dxt, da_prev, dc_prev, dWf, dbf, dWi, dbi, dWc, dbc,
    dWo, dbo."""
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters) = cache
    p = parameters
    n_a, m = a_next.shape
    gates = _fuse(ot, ft, it, cct)
    dt = gates.dtype
    tc = np.tanh(c_next)
    d = np.empty((m, 4 * n_a), dtype=dt)
    e = np.empty((m, n_a), dtype=dt)
    lstm_backward_factors(gates, np.ascontiguousarray(c_prev.T), np.ascontiguousarray(tc.T), d, e)
    dc = np.array(dc_next.T, dtype=dt, order="C")
    dz = np.empty((m, 4 * n_a), dtype=dt)
    lstm_backward_step(np.ascontiguousarray(da_next.T), dc, gates, d, e, dz)
    dot, dft, dit, dcct = _unfuse(dz)
    concat = np.concatenate((a_prev, xt), axis=0)
    dconcat = (
        np.dot(p["Wf"].T, dft)
        + np.dot(p["Wi"].T, dit)
        + np.dot(p["Wc"].T, dcct)
        + np.dot(p["Wo"].T, dot)
    )
    return {
        "dxt": dconcat[n_a:],
        "da_prev": dconcat[:n_a],
        "dc_prev": np.ascontiguousarray(dc.T),
        "dWf": np.dot(dft, concat.T),
        "dbf": np.sum(dft, axis=1, keepdims=True),
        "dWi": np.dot(dit, concat.T),
        "dbi": np.sum(dit, axis=1, keepdims=True),
        "dWc": np.dot(dcct, concat.T),
        "dbc": np.sum(dcct, axis=1, keepdims=True),
        "dWo": np.dot(dot, concat.T),
        "dbo": np.sum(dot, axis=1, keepdims=True),
    }


def lstm_backward(da: np.ndarray, caches: tuple) -> dict[str, np.ndarray]:
    """Course LSTM backward.  T_x comes from ``da`` (it may be shorter than the forward pass);
    keys dx, da0, dWf, dbf, dWi, dbi, dWc, dbc, dWo, dbo."""
    cache_list, _ = caches
    x1 = cache_list[0][8]
    n_a, m, T_x = da.shape
    n_x = x1.shape[0]
    dt = np.result_type(da, x1)
    dx = np.zeros((n_x, m, T_x), dtype=dt)
    grads = {f"dW{k}": np.zeros((n_a, n_a + n_x), dtype=dt) for k in "fico"}
    grads.update({f"db{k}": np.zeros((n_a, 1), dtype=dt) for k in "fico"})
    da_prevt = np.zeros((n_a, m), dtype=dt)
    dc_prevt = np.zeros((n_a, m), dtype=dt)
    for t in reversed(range(T_x)):
        step = lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, cache_list[t])
        dx[:, :, t] = step["dxt"]
        for key in grads:
            grads[key] += step[key]
        da_prevt = step["da_prev"]
        dc_prevt = step["dc_prev"]
    return {
        "dx": dx,
        "da0": da_prevt,
        "dWf": grads["dWf"],
        "dbf": grads["dbf"],
        "dWi": grads["dWi"],
        "dbi": grads["dbi"],
        "dWc": grads["dWc"],
        "dbc": grads["dbc"],
        "dWo": grads["dWo"],
        "dbo": grads["dbo"],
    }


__all__ = [
    "GATE_ORDER",
    "LSTMCell",
    "LSTMConfig",
    "lstm_backward",
    "lstm_backward_factors",
    "lstm_backward_step",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "lstm_gates_forward",
]
