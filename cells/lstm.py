"""LSTM cell (the course's formulas: update gate i, forget gate f, output gate o, candidate g).

The four gates are fused: ``W_x`` (D, 4H), ``W_h`` (H, 4H), ``b`` (4H,) with the gate blocks in
the order **[o, f, i, g]**.  That order puts the three sigmoid gates side by side (one sigmoid
call per step) and the three gates whose gradient is ``dc * factor`` (f, i, g) side by side (one
broadcast multiply per step in the backward pass).

The pointwise math is written once (``lstm_gates_forward``, ``lstm_backward_factors``,
``lstm_backward_step``) on
*gate-major* arrays: axis 0 is the gate (``z[0]`` is o, ``z[1]`` f, ``z[2]`` i, ``z[3]`` g),
the remaining axes are any layout shared with the state arrays.  The
fast plugin :class:`LSTMCell` passes (4, B, H) blocks of one step (each gate a contiguous (B, H)
block, see framework/nn/cell.py); the course's step-by-step API (column layout, per-gate
matrices ``Wf, Wi, Wc, Wo`` over ``concat = [a_prev; xt]``) stacks its four (n_a, m) gate
arrays and calls the same functions, with no transposes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.nn.cell import (
    Cell,
    CellConfig,
    CompiledCache,
    backward_chunks,
    course_normal,
    course_softmax,
    fused,
    gate_major,
    sigmoid,
)
from framework.registry import CELLS

GATE_ORDER = ("o", "f", "i", "g")  # block k of the fused arrays holds gate GATE_ORDER[k]
_COURSE_DRAW_ORDER = ("f", "i", "o", "g")  # the course draws Wf, Wi, Wo, Wc in this order
# Per-gate factor of the fast path's pre-activations (sigmoid gates take x/2, see
# lstm_gates_forward(halved=True)), folded into its gate-major weight copies.
PRESCALE = (0.5, 0.5, 0.5, 1.0)


# --------------------------------------------------------------------------- pointwise math
def lstm_gates_forward(
    z: np.ndarray,
    c_prev: np.ndarray,
    c_out: np.ndarray,
    tc_out: np.ndarray,
    h_out: np.ndarray,
    *,
    halved: bool = False,
) -> None:
    """Activate the gate-major pre-activations ``z`` (4, ...) in place; compute the new state.

    ft = σ(zf), it = σ(zi), ot = σ(zo), g = tanh(zg);
    c = ft*c_prev + it*g; tc = tanh(c); h = ot*tc.

    ``halved=True`` (the fast path): ``z[:3]`` hold HALF the sigmoid gates' pre-activations
    (the factor :data:`PRESCALE` is folded into the weights, exactly: halving is exact in binary
    floating point) and σ(x) = (1 + tanh(x/2)) / 2, so one tanh call activates all four gates
    and a multiply-add finishes the sigmoids: 3 passes fewer than exp/add/reciprocal and no
    overflow.  Its absolute error is the same (~1 ulp of 1), but tiny σ lose *relative*
    precision, so the course API keeps the course's 1 / (1 + exp(-x)) (``halved=False``).
    """
    if halved:
        np.tanh(z, out=z)
        sig = z[:3]
        np.multiply(sig, 0.5, out=sig)  # a Python float is a weak scalar: float32 stays float32
        np.add(sig, 0.5, out=sig)
    else:
        with np.errstate(over="ignore"):  # exp overflow in σ of very negative inputs -> 0
            sigmoid(z[:3], out=z[:3])  # o, f, i together
        np.tanh(z[3], out=z[3])
    o, f, i, g = z
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
    """Local derivatives that do not depend on the upstream gradient (any number of steps; the
    fast path calls it on chunks of steps small enough to stay in cache, see LSTMCell.backward).

    d_out (4, ...) = [o(1-o)·tc, f(1-f)·c_prev, i(1-i)·g, (1-g²)·i] and e_out = o·(1-tc²), so
    that one step back is dc_tot = dc + dh·e, dz_o = dh·d_o, dz_{f,i,g} = dc_tot·d_{f,i,g}.
    """
    sig, dsig = gates[:3], d_out[:3]
    np.subtract(1, sig, out=dsig)
    np.multiply(dsig, sig, out=dsig)  # σ' = s(1-s) for o, f, i together
    o, _, i, g = gates
    d_o, d_f, d_i, d_g = d_out
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
    the future, updated IN PLACE to the gradient wrt c_{t-1}.  ``dz`` (4, ...) receives the
    gate-major pre-activation gradients."""
    dz_o = dz[0]
    np.multiply(dh, e, out=dz_o)  # dz_o is scratch for dh*e here
    np.add(dc, dz_o, out=dc)  # dc_tot = dc_next + dh*o*(1-tc²)
    np.multiply(dh, d[0], out=dz_o)
    np.multiply(dc, d[1:], out=dz[1:])  # f, i, g in one broadcast multiply
    np.multiply(dc, gates[1], out=dc)  # dc_prev = dc_tot * f


# --------------------------------------------------------------------------- fast plugin
@dataclass
class LSTMConfig(CellConfig):
    forget_bias: float = 1.0  # initial forget-gate bias (both init schemes)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {self.forget_bias}")


@CELLS.register("lstm", schema=LSTMConfig)
class LSTMCell(Cell):
    """LSTM; four gate blocks [o, f, i, g], state (h, c)."""

    gates = 4
    state_size = 2

    def course_blocks(self, input_size: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
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
        b[k * self.hidden_size : (k + 1) * self.hidden_size] = self.cfg.forget_bias
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
        kernels = self.kernels_for(dt)
        if kernels is not None:
            return self._forward_compiled(kernels, params, x, state0, ids)
        T, B = x.shape[:2]
        H = self.hidden_size
        h0, c0 = self.initial_state(state0, B, dt)
        Hs = np.empty((T + 1, B, H), dtype=dt)
        C = np.empty((T + 1, B, H), dtype=dt)
        TC = np.empty((T, B, H), dtype=dt)
        Hs[0] = h0
        C[0] = c0
        G = self.project_inputs(params, x, ids, prescale=PRESCALE)  # (4, T, B, H) -> activations
        W_h4 = gate_major(W_h, 4)  # (4, H, H): the matmul writes each gate contiguously
        W_h4[:3] *= 0.5  # PRESCALE (exact)
        rec = self._ws.get("rec", (4, B, H), dt)
        for t in range(T):
            np.matmul(Hs[t], W_h4, out=rec)  # one stacked recurrent matmul for 4 gates
            z = G[:, t]
            np.add(z, rec, out=z)
            lstm_gates_forward(z, C[t], C[t + 1], TC[t], Hs[t + 1], halved=True)
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
        if isinstance(cache, CompiledCache):  # from _forward_compiled
            return self._backward_compiled(params, dhs, dstateT, cache)
        x, ids, Hs, C, G, TC = cache
        W_h = params["W_h"]
        dt = W_h.dtype
        T, B, H = TC.shape
        dZ = self._ws.get("dZ", (4, T, B, H), dt)
        dh = self._ws.get("dh", (B, H), dt)
        back = self._ws.get("back", (4, B, H), dt)
        # Factors for a chunk of steps at a time (framework.nn.cell.backward_chunks): 5 arrays.
        chunks = backward_chunks(T, 5 * B * H * dt.itemsize)
        K = chunks[0][1] - chunks[0][0]
        D = self._ws.get("D", (4, K, B, H), dt)
        E = self._ws.get("E", (K, B, H), dt)
        dh_next = np.zeros((B, H), dtype=dt)
        dc = np.zeros((B, H), dtype=dt)
        if dstateT is not None:
            if dstateT[0] is not None:
                dh_next[...] = dstateT[0]
            if dstateT[1] is not None:
                dc[...] = dstateT[1]
        # (4, H, H) transposed blocks of W_h, contiguous: ~25% faster stacked matmuls than views
        W_h4T = np.ascontiguousarray(gate_major(W_h, 4).transpose(0, 2, 1))
        for t0, t1 in chunks:
            n = t1 - t0
            lstm_backward_factors(G[:, t0:t1], C[t0:t1], TC[t0:t1], D[:, :n], E[:n])
            for t in range(t1 - 1, t0 - 1, -1):
                self.total_dh(dhs, t, dh_next, out=dh)
                dz = dZ[:, t]
                lstm_backward_step(dh, dc, G[:, t], D[:, t - t0], E[t - t0], dz)
                # dh_prev = dz_fused @ W_h.T = sum over gates of dz[k] @ W_h[k-block].T
                np.matmul(dz, W_h4T, out=back)
                np.sum(back, axis=0, out=dh_next)
        # All weight gradients in single big (stacked) matmuls over every step at once.
        dW_h = fused(np.matmul(Hs[:-1].reshape(T * B, H).T, dZ.reshape(4, T * B, H)))
        dW_x, db, dx = self.input_grads(params, dZ, x, ids)
        return {"W_x": dW_x, "W_h": dW_h, "b": db}, dx, (dh_next, dc)

    # ------------------------------------------------------------------ cell.backend=numba
    def _forward_compiled(
        self, kernels: Any, params: dict[str, np.ndarray], x: np.ndarray, state0: tuple | None,
        ids: bool,
    ) -> tuple[np.ndarray, tuple, Any]:
        """The forward pass with the compiled step kernel (framework/nn/numba_kernels.py): per
        step one BLAS matmul ``h @ W_h`` (B, 4H) (W_h with padded rows, see
        :meth:`~framework.nn.cell.Cell.padded_recurrent`) and one kernel call for the gate maths,
        the input gather included.  Gate activations are kept fused, (T, B, 4H)."""
        W_h = params["W_h"]
        dt = W_h.dtype
        T, B = x.shape[:2]
        H = self.hidden_size
        h0, c0 = self.initial_state(state0, B, dt)
        Hs = np.empty((T + 1, B, H), dtype=dt)
        C = np.empty((T + 1, B, H), dtype=dt)
        TC = np.empty((T, B, H), dtype=dt)
        A = np.empty((T, B, 4 * H), dtype=dt)
        Hs[0] = h0
        C[0] = c0
        table, rows = self.compiled_inputs(params, x, ids)
        W_pad, rec_pad = self.padded_recurrent(W_h, B)
        rec = rec_pad[:, : 4 * H]
        step = kernels.lstm_forward_step
        for t in range(T):
            np.matmul(Hs[t], W_pad, out=rec)
            step(t, rec_pad, table, rows, C, Hs, TC, A)
        hs = Hs[1:]
        hs.flags.writeable = False
        hT, cT = Hs[T], C[T]
        hT.flags.writeable = False
        cT.flags.writeable = False
        return hs, (hT, cT), CompiledCache((x, ids, Hs, C, A, TC, rows, W_pad, kernels))

    def _backward_compiled(
        self, params: dict[str, np.ndarray], dhs: np.ndarray | None, dstateT: tuple | None,
        cache: Any,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple]:
        x, ids, Hs, C, A, TC, rows, W_pad, kernels = cache
        W_h = params["W_h"]
        dt = W_h.dtype
        T, B, H = TC.shape
        dZ = self._ws.get("dZ_fused", (T, B, 4 * H), dt)
        dh_next = np.zeros((B, H), dtype=dt)
        dc = np.zeros((B, H), dtype=dt)
        if dstateT is not None:
            if dstateT[0] is not None:
                dh_next[...] = dstateT[0]
            if dstateT[1] is not None:
                dc[...] = dstateT[1]
        up = np.empty((0, B, H), dtype=dt) if dhs is None else np.ascontiguousarray(dhs, dtype=dt)
        # The kernels sum dZ rows per token id into the rows of dW_x (and of the bias).
        scattered = np.zeros((params["W_x"].shape[0] + 1 if ids else 0, 4 * H), dtype=dt)
        W_hT = self.padded_transpose(W_pad)  # (4H, H)
        step = kernels.lstm_backward_step
        for t in range(T - 1, -1, -1):
            step(t, up, dh_next, dc, A, C, TC, dZ, rows, scattered)
            np.matmul(dZ[t], W_hT, out=dh_next)
        dZ2 = dZ.reshape(T * B, 4 * H)
        dW_h = np.matmul(Hs[:-1].reshape(T * B, H).T, dZ2)
        dW_x, db, dx = self.compiled_input_grads(params, dZ, x, ids, scattered)
        return {"W_x": dW_x, "W_h": dW_h, "b": db}, dx, (dh_next, dc)


# --------------------------------------------------------------------------- course API
def lstm_cell_forward(
    xt: np.ndarray, a_prev: np.ndarray, c_prev: np.ndarray, parameters: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """One course LSTM step; returns (a_next, c_next, yt_pred, cache) with the 10-tuple cache
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)."""
    p = parameters
    concat = np.concatenate((a_prev, xt), axis=0)
    z = np.stack([  # gate-major in GATE_ORDER, each (n_a, m): the pointwise math is layout-free
        np.dot(p["Wo"], concat) + p["bo"],
        np.dot(p["Wf"], concat) + p["bf"],
        np.dot(p["Wi"], concat) + p["bi"],
        np.dot(p["Wc"], concat) + p["bc"],
    ])
    a_next, c_next, tc = (np.empty_like(z[0]) for _ in range(3))
    lstm_gates_forward(z, c_prev, c_next, tc, a_next)
    ot, ft, it, cct = z
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
    gates = np.stack([ot, ft, it, cct])  # gate-major, GATE_ORDER
    dt = gates.dtype
    tc = np.tanh(c_next)
    d = np.empty_like(gates)
    e = np.empty_like(tc)
    lstm_backward_factors(gates, c_prev, tc, d, e)
    dc = np.array(dc_next, dtype=dt)  # updated in place to dc_prev
    dz = np.empty_like(gates)
    lstm_backward_step(da_next, dc, gates, d, e, dz)
    dot, dft, dit, dcct = dz
    n_a = a_next.shape[0]
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
        "dc_prev": dc,
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
