"""Vanilla tanh RNN cell: h_t = tanh(h_{t-1} W_h + x_t W_x + b).

Two views over the same pointwise math (``rnn_pointwise_forward`` and the two backward
helpers): the fast batched plugin :class:`RNNCell` (rows = batch elements, see
framework/nn/cell.py) and the course's step-by-step API (columns = batch elements, dict
parameters ``Wax, Waa, Wya, ba, by``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.nn.cell import (
    Cell,
    CellConfig,
    CompiledCache,
    course_normal,
    course_softmax,
)
from framework.registry import CELLS


# --------------------------------------------------------------------------- pointwise math
def rnn_pointwise_forward(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Hidden state from the pre-activation: a = tanh(z)."""
    return np.tanh(z, out=out)


def rnn_backward_factors(h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """tanh'(z) expressed with the output: 1 - h**2 (any number of steps at once)."""
    out = np.square(h, out=out)
    return np.subtract(1, out, out=out)


def rnn_backward_step(
    dh: np.ndarray, factor: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Pre-activation gradient dz = dh * (1 - h**2)."""
    return np.multiply(dh, factor, out=out)


# --------------------------------------------------------------------------- fast plugin
@CELLS.register("rnn", schema=CellConfig)
class RNNCell(Cell):
    """tanh RNN; one gate block, state (h,)."""

    gates = 1
    state_size = 1

    def course_blocks(self, input_size: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        # The course draws Wax (n_a, n_x) then Waa (n_a, n_a); the fast layout is transposed.
        Wax = course_normal(rng, (self.hidden_size, input_size))
        Waa = course_normal(rng, (self.hidden_size, self.hidden_size))
        return Wax.T, Waa.T

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
        (h0,) = self.initial_state(state0, B, dt)
        kernels = self.kernels_for(dt)
        if kernels is not None:
            return self._forward_compiled(kernels, params, x, h0, ids)
        # Hs[0] is the initial state so that Hs[:-1] are the "previous" states of every step,
        # which the backward pass needs for its single dW_h matmul.
        Hs = np.empty((T + 1, B, H), dtype=dt)
        Hs[0] = h0
        self.project_inputs(params, x, ids, out=Hs[None, 1:])  # one gate: (1, T, B, H)
        rec = self._ws.get("rec", (B, H), dt)
        for t in range(T):
            np.matmul(Hs[t], W_h, out=rec)
            h = Hs[t + 1]
            np.add(h, rec, out=h)
            rnn_pointwise_forward(h, out=h)
        hs = Hs[1:]
        hs.flags.writeable = False  # a view of the cache: callers must not edit it in place
        hT = Hs[T]
        hT.flags.writeable = False
        return hs, (hT,), (x, ids, Hs)

    def backward(
        self,
        params: dict[str, np.ndarray],
        dhs: np.ndarray | None,
        dstateT: tuple | None,
        cache: Any,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple]:
        if isinstance(cache, CompiledCache):  # from _forward_compiled
            return self._backward_compiled(params, dhs, dstateT, cache)
        x, ids, Hs = cache
        W_h = params["W_h"]
        dt = W_h.dtype
        T1, B, H = Hs.shape
        T = T1 - 1
        factors = rnn_backward_factors(Hs[1:], out=self._ws.get("factors", (T, B, H), dt))
        dZ = self._ws.get("dZ", (T, B, H), dt)
        dh_next = np.zeros((B, H), dtype=dt)
        if dstateT is not None and dstateT[0] is not None:
            dh_next[...] = dstateT[0]
        W_hT = np.ascontiguousarray(W_h.T)  # a contiguous copy: ~20% faster GEMMs than the view
        for t in range(T - 1, -1, -1):
            dz = dZ[t]
            self.total_dh(dhs, t, dh_next, out=dz)
            rnn_backward_step(dz, factors[t], out=dz)
            np.matmul(dz, W_hT, out=dh_next)
        # All weight gradients in single big matmuls over every step at once.
        dW_h = np.matmul(Hs[:-1].reshape(T * B, H).T, dZ.reshape(T * B, H))
        dW_x, db, dx = self.input_grads(params, dZ[None], x, ids)
        return {"W_x": dW_x, "W_h": dW_h, "b": db}, dx, (dh_next,)

    # ------------------------------------------------------------------ cell.backend=numba
    def _forward_compiled(
        self, kernels: Any, params: dict[str, np.ndarray], x: np.ndarray, h0: np.ndarray,
        ids: bool,
    ) -> tuple[np.ndarray, tuple, Any]:
        """Per step one matmul and one kernel call (input gather, bias and tanh fused)."""
        W_h = params["W_h"]
        dt = W_h.dtype
        T, B = x.shape[:2]
        H = self.hidden_size
        Hs = np.empty((T + 1, B, H), dtype=dt)
        Hs[0] = h0
        table, rows = self.compiled_inputs(params, x, ids)
        W_pad, rec_pad = self.padded_recurrent(W_h, B)
        rec = rec_pad[:, :H]
        step = kernels.rnn_forward_step
        for t in range(T):
            np.matmul(Hs[t], W_pad, out=rec)
            step(t, rec_pad, table, rows, Hs)
        hs = Hs[1:]
        hs.flags.writeable = False
        hT = Hs[T]
        hT.flags.writeable = False
        return hs, (hT,), CompiledCache((x, ids, Hs, rows, W_pad, kernels))

    def _backward_compiled(
        self, params: dict[str, np.ndarray], dhs: np.ndarray | None, dstateT: tuple | None,
        cache: Any,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple]:
        x, ids, Hs, rows, W_pad, kernels = cache
        dt = Hs.dtype
        T1, B, H = Hs.shape
        T = T1 - 1
        dZ = self._ws.get("dZ", (T, B, H), dt)
        dh = np.zeros((B, H), dtype=dt)
        if dstateT is not None and dstateT[0] is not None:
            dh[...] = dstateT[0]
        up = np.empty((0, B, H), dtype=dt) if dhs is None else np.ascontiguousarray(dhs, dtype=dt)
        scattered = np.zeros((params["W_x"].shape[0] + 1 if ids else 0, H), dtype=dt)
        W_hT = self.padded_transpose(W_pad)
        step = kernels.rnn_backward_step
        for t in range(T - 1, -1, -1):
            step(t, up, dh, Hs, dZ, rows, scattered)
            np.matmul(dZ[t], W_hT, out=dh)
        dW_h = np.matmul(Hs[:-1].reshape(T * B, H).T, dZ.reshape(T * B, H))
        dW_x, db, dx = self.compiled_input_grads(params, dZ, x, ids, scattered)
        return {"W_x": dW_x, "W_h": dW_h, "b": db}, dx, (dh,)


# --------------------------------------------------------------------------- course API
def rnn_cell_forward(
    xt: np.ndarray, a_prev: np.ndarray, parameters: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One course RNN step in column layout; returns (a_next, yt_pred, cache)."""
    Wax, Waa, Wya = parameters["Wax"], parameters["Waa"], parameters["Wya"]
    ba, by = parameters["ba"], parameters["by"]
    a_next = rnn_pointwise_forward(np.dot(Waa, a_prev) + np.dot(Wax, xt) + ba)
    yt_pred = course_softmax(np.dot(Wya, a_next) + by)
    cache = (a_next, a_prev, xt, parameters)
    return a_next, yt_pred, cache


def rnn_forward(
    x: np.ndarray, a0: np.ndarray, parameters: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Course RNN over x (n_x, m, T_x); returns (a, y_pred, caches=(list_of_caches, x))."""
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wya"].shape
    dt = np.result_type(x, a0, parameters["Wya"])
    a = np.zeros((n_a, m, T_x), dtype=dt)
    y_pred = np.zeros((n_y, m, T_x), dtype=dt)
    caches = []
    a_next = a0
    for t in range(T_x):
        a_next, yt_pred, cache = rnn_cell_forward(x[:, :, t], a_next, parameters)
        a[:, :, t] = a_next
        y_pred[:, :, t] = yt_pred
        caches.append(cache)
    return a, y_pred, (caches, x)


def rnn_cell_backward(da_next: np.ndarray, cache: tuple) -> dict[str, np.ndarray]:
    """Course RNN cell backward; keys dxt, da_prev, dWax, dWaa, dba."""
    a_next, a_prev, xt, parameters = cache
    Wax, Waa = parameters["Wax"], parameters["Waa"]
    dtanh = rnn_backward_step(da_next, rnn_backward_factors(a_next))
    return {
        "dxt": np.dot(Wax.T, dtanh),
        "da_prev": np.dot(Waa.T, dtanh),
        "dWax": np.dot(dtanh, xt.T),
        "dWaa": np.dot(dtanh, a_prev.T),
        "dba": np.sum(dtanh, axis=1, keepdims=True),
    }


def rnn_backward(da: np.ndarray, caches: tuple) -> dict[str, np.ndarray]:
    """Course RNN backward over da (n_a, m, T_x); keys dx, da0, dWax, dWaa, dba."""
    cache_list, _ = caches
    _, _, x1, parameters = cache_list[0]
    n_a, m, T_x = da.shape
    n_x = x1.shape[0]
    dt = np.result_type(da, x1)
    dx = np.zeros((n_x, m, T_x), dtype=dt)
    dWax = np.zeros((n_a, n_x), dtype=dt)
    dWaa = np.zeros((n_a, n_a), dtype=dt)
    dba = np.zeros((n_a, 1), dtype=dt)
    da_prevt = np.zeros((n_a, m), dtype=dt)
    for t in reversed(range(T_x)):
        grads = rnn_cell_backward(da[:, :, t] + da_prevt, cache_list[t])
        dx[:, :, t] = grads["dxt"]
        dWax += grads["dWax"]
        dWaa += grads["dWaa"]
        dba += grads["dba"]
        da_prevt = grads["da_prev"]
    return {"dx": dx, "da0": da_prevt, "dWax": dWax, "dWaa": dWaa, "dba": dba}


__all__ = [
    "RNNCell",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_forward",
]
