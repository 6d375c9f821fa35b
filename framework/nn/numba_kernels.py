"""Compiled gate kernels of ``cell.backend=numba`` (optional: ``pip install -e ".[fast]"``).

Imported only when a cell is built with ``backend="numba"``
(:func:`framework.nn.cell.load_kernels`), so numba is never imported by the default NumPy path
nor by ``python -m framework --help``.

What the kernels do, per time step, is the element-wise part of a cell fused into one pass:
the input projection (a row of a gather table, or of a dense projection), the gate
non-linearities, the state update, and in the backward pass the local derivatives, the
pre-activation gradients and the input-weight gradient (a scatter-add into ``dW_x``).  The
matmuls stay in NumPy's BLAS, one call per step.

Why the kernels look the way they do (each choice measured, docs/performance.md):

* ``fastmath=True`` and ``error_model="numpy"`` let LLVM vectorise the loops (no division-by-zero
  checks, reassociation allowed);
* llvmlite has no vector ``tanh`` (a scalar libm call per element), so float32 uses a rational
  approximation, :func:`tanh32`, written with multiply-adds and one division only (max absolute
  error 3.5e-7, about 3 float32 ulps of 1, against 6e-8 for ``np.tanh``); float64 keeps
  ``math.tanh`` so that the float64 gradient check can hold the backward pass to 1e-7;
* every loop runs over one contiguous row of H (or G*H) elements, the layout the fused
  ``(T, B, G*H)`` arrays have, with the loop-invariant row slices taken outside the inner loop;
* constants are made in the arrays' dtype (``dtype.type(...)``): a float64 literal would promote
  float32 arithmetic to float64 and halve the vector width.

The results agree with the NumPy path within float32 rounding, not bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np
from numba import types
from numba.extending import overload

JIT_OPTIONS = {"cache": True, "fastmath": True, "error_model": "numpy", "nogil": True,
               "boundscheck": False}

# tanh(x) ~ x * P(x^2) / Q(x^2) on [-9, 9], clamped outside (tanh(9) rounds to 1 in float32).
# The coefficients were fitted for this module (a Loeb/Lawson iteration for the minimax absolute
# error in float64); evaluated in float32 the error is dominated by rounding: max 3.5e-7.
TANH_CLAMP = 9.0
TANH_P = (0.9999998807907104, 0.1337318867444992, 0.0034865711349993944, 2.047165071417112e-05,
          1.318397124805415e-08)
TANH_Q = (1.0, 0.46706485748291016, 0.025841938331723213, 0.0003271367750130594,
          7.702560651523527e-07)
_F32 = np.float32
_CL, _NCL = _F32(TANH_CLAMP), _F32(-TANH_CLAMP)
_P0, _P1, _P2, _P3, _P4 = (_F32(c) for c in TANH_P)
_Q0, _Q1, _Q2, _Q3, _Q4 = (_F32(c) for c in TANH_Q)


def tanh32(x: np.ndarray) -> np.ndarray:
    """The float32 rational tanh of the kernels, in NumPy (for tests and documentation)."""
    x = np.clip(np.asarray(x, dtype=np.float32), _NCL, _CL)
    s = x * x
    num = (((_P4 * s + _P3) * s + _P2) * s + _P1) * s + _P0
    den = (((_Q4 * s + _Q3) * s + _Q2) * s + _Q1) * s + _Q0
    return x * num / den


def fast_tanh(x: float) -> float:
    """tanh for the kernels: the rational form for float32, ``math.tanh`` for float64."""
    return math.tanh(x)


@overload(fast_tanh, jit_options={"fastmath": True, "error_model": "numpy"}, inline="always")
def _fast_tanh_impl(x):  # noqa: ANN001, ANN202 -- numba compares the two signatures' annotations
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def tanh_f32(x):
            x = min(max(x, _NCL), _CL)
            s = x * x
            num = (((_P4 * s + _P3) * s + _P2) * s + _P1) * s + _P0
            den = (((_Q4 * s + _Q3) * s + _Q2) * s + _Q1) * s + _Q0
            return x * num / den
        return tanh_f32

    def tanh_exact(x):
        return math.tanh(x)
    return tanh_exact


def _jit(fn: Callable) -> Callable:
    return numba.njit(**JIT_OPTIONS)(fn)


# --------------------------------------------------------------------------- LSTM
# Fused layout of the gates in a row: [o, f, i, g] blocks of H (cells/lstm.py GATE_ORDER).
#
# Each inner loop writes one or two output streams.  LLVM vectorises a loop over arrays that
# may overlap only behind runtime overlap checks, one per (written, other) pair of pointers, and
# gives up above a small number of them: one loop doing a whole LSTM step (7 outputs, 4 inputs)
# ran scalar, 4.5x slower than these split loops (measured).  The rows are in L1 meanwhile.
@_jit
def lstm_forward_step(t: int, rec: np.ndarray, table: np.ndarray, rows: np.ndarray, C: np.ndarray,
                      Hs: np.ndarray, TC: np.ndarray, A: np.ndarray) -> None:
    """Step t: pre-activations rec[b] + table[rows[t, b]] (B, 4H) -> gate activations A[t]
    ([σ(o), σ(f), σ(i), tanh(g)]), C[t + 1], TC[t] = tanh(C[t + 1]) and Hs[t + 1]."""
    B = rec.shape[0]
    H = Hs.shape[2]
    half = A.dtype.type(0.5)
    for b in range(B):
        r = rec[b]
        x = table[rows[t, b]]
        a = A[t, b]
        for j in range(3 * H):  # σ(z) = (1 + tanh(z/2)) / 2: one tanh per gate
            a[j] = half + half * fast_tanh(half * (r[j] + x[j]))
        for j in range(3 * H, 4 * H):
            a[j] = fast_tanh(r[j] + x[j])
        c_prev = C[t, b]
        c_new = C[t + 1, b]
        for j in range(H):
            c_new[j] = a[H + j] * c_prev[j] + a[2 * H + j] * a[3 * H + j]
        tc_out = TC[t, b]
        h_out = Hs[t + 1, b]
        for j in range(H):
            tc = fast_tanh(c_new[j])
            tc_out[j] = tc
            h_out[j] = a[j] * tc


@_jit
def lstm_backward_step(t: int, dhs: np.ndarray, dh_next: np.ndarray, dc: np.ndarray, A: np.ndarray,
                       C: np.ndarray, TC: np.ndarray, dZ: np.ndarray, rows: np.ndarray,
                       dW: np.ndarray) -> None:
    """Step t back.  dh = dhs[t] + dh_next, accumulated in dh_next (a dhs of shape (0, ...)
    means no per-step gradient); dc (B, H), the gradient reaching C[t + 1], is updated in place
    to the one reaching C[t]; dZ[t] (B, 4H) receives the pre-activation gradients; when dW has
    rows, dW[rows[t, b]] += dZ[t, b] (the gather's gradient: dW_x rows and the bias row)."""
    B, H = dc.shape
    one = A.dtype.type(1.0)
    per_step = dhs.shape[0] > 0
    scatter = dW.shape[0] > 0
    for b in range(B):
        a = A[t, b]
        tc = TC[t, b]
        dh = dh_next[b]
        dcb = dc[b]
        dz = dZ[t, b]
        if per_step:
            up = dhs[t, b]
            for j in range(H):
                dh[j] += up[j]
        for j in range(H):  # o; then dc_tot = dc + dh * o * (1 - tanh(c)^2)
            dz[j] = dh[j] * tc[j] * a[j] * (one - a[j])
        for j in range(H):
            dcb[j] += dh[j] * a[j] * (one - tc[j] * tc[j])
        c_prev = C[t, b]
        for j in range(H):  # f
            dz[H + j] = dcb[j] * c_prev[j] * a[H + j] * (one - a[H + j])
        for j in range(H):  # i
            dz[2 * H + j] = dcb[j] * a[3 * H + j] * a[2 * H + j] * (one - a[2 * H + j])
        for j in range(H):  # g
            dz[3 * H + j] = dcb[j] * a[2 * H + j] * (one - a[3 * H + j] * a[3 * H + j])
        for j in range(H):  # the gradient reaching c_{t-1}
            dcb[j] *= a[H + j]
        if scatter:
            w = dW[rows[t, b]]
            for j in range(4 * H):
                w[j] += dz[j]


# --------------------------------------------------------------------------- GRU
# Fused layout of the gates in a row: [r, z, n] blocks of H (cells/gru.py GATE_ORDER).
@_jit
def gru_forward_gates(t: int, rec: np.ndarray, table: np.ndarray, rows: np.ndarray,
                      Hs: np.ndarray, A: np.ndarray, RH: np.ndarray) -> None:
    """Step t, first half: r, z = σ(rec[b] + table[rows[t, b]]) (the first 2H columns) into
    A[t, :, :2H], and RH[t] = r * h_prev, the input of the candidate's matmul."""
    B = RH.shape[1]
    H = Hs.shape[2]
    half = A.dtype.type(0.5)
    for b in range(B):
        r = rec[b]
        x = table[rows[t, b]]
        a = A[t, b]
        for j in range(2 * H):
            a[j] = half + half * fast_tanh(half * (r[j] + x[j]))
        h_prev = Hs[t, b]
        rh = RH[t, b]
        for j in range(H):
            rh[j] = a[j] * h_prev[j]


@_jit
def gru_forward_state(t: int, rec: np.ndarray, table: np.ndarray, rows: np.ndarray,
                      Hs: np.ndarray, A: np.ndarray) -> None:
    """Step t, second half: n = tanh(rec[b] + table[rows[t, b]][2H:]) into A[t, :, 2H:] and
    h = n + z * (h_prev - n) into Hs[t + 1]."""
    B = A.shape[1]
    H = Hs.shape[2]
    for b in range(B):
        r = rec[b]
        x = table[rows[t, b]]
        a = A[t, b]
        for j in range(H):
            a[2 * H + j] = fast_tanh(r[j] + x[2 * H + j])
        h_prev = Hs[t, b]
        h_out = Hs[t + 1, b]
        for j in range(H):
            n = a[2 * H + j]
            h_out[j] = n + a[H + j] * (h_prev[j] - n)


@_jit
def gru_backward_zn(t: int, dhs: np.ndarray, dh: np.ndarray, carry: np.ndarray, A: np.ndarray,
                    Hs: np.ndarray, dZ: np.ndarray) -> None:
    """Step t back, first half.  dh (B, H) holds the matmul part of the gradient reaching h_t
    and ``carry`` its element-wise part; both are summed (with dhs[t] unless dhs has no steps)
    into dh.  Then dZ[t] gets the z and n blocks: dh·z(1-z)·(h_prev - n) and dh·(1-z)(1-n²)."""
    B, H = dh.shape
    one = A.dtype.type(1.0)
    per_step = dhs.shape[0] > 0
    for b in range(B):
        d = dh[b]
        c = carry[b]
        for j in range(H):
            d[j] += c[j]
        if per_step:
            up = dhs[t, b]
            for j in range(H):
                d[j] += up[j]
        a = A[t, b]
        h_prev = Hs[t, b]
        dz = dZ[t, b]
        for j in range(H):
            z = a[H + j]
            dz[H + j] = d[j] * z * (one - z) * (h_prev[j] - a[2 * H + j])
        for j in range(H):
            n = a[2 * H + j]
            dz[2 * H + j] = d[j] * (one - a[H + j]) * (one - n * n)


@_jit
def gru_backward_r(t: int, drh: np.ndarray, dh: np.ndarray, carry: np.ndarray, A: np.ndarray,
                   Hs: np.ndarray, dZ: np.ndarray, rows: np.ndarray, dW: np.ndarray) -> None:
    """Step t back, second half, from drh = dz_n @ W_hn^T (the gradient reaching r * h_prev):
    dZ[t]'s r block drh·r(1-r)·h_prev, and carry = drh·r + dh·z, the element-wise part of the
    gradient reaching h_prev (its matmul part, dz_{r,z} @ W_h{r,z}^T, is the caller's).  When dW
    has rows, dW[rows[t, b]] += dZ[t, b] (the gather's gradient)."""
    B, H = dh.shape
    one = A.dtype.type(1.0)
    scatter = dW.shape[0] > 0
    for b in range(B):
        a = A[t, b]
        d = drh[b]
        h_prev = Hs[t, b]
        dz = dZ[t, b]
        for j in range(H):
            r = a[j]
            dz[j] = d[j] * r * (one - r) * h_prev[j]
        c = carry[b]
        g = dh[b]
        for j in range(H):
            c[j] = d[j] * a[j] + g[j] * a[H + j]
        if scatter:
            w = dW[rows[t, b]]
            for j in range(3 * H):
                w[j] += dz[j]


# --------------------------------------------------------------------------- RNN
@_jit
def rnn_forward_step(t: int, rec: np.ndarray, table: np.ndarray, rows: np.ndarray,
                     Hs: np.ndarray) -> None:
    """Step t: Hs[t + 1] = tanh(rec[b] + table[rows[t, b]])."""
    B = Hs.shape[1]
    H = Hs.shape[2]
    for b in range(B):
        r = rec[b]
        x = table[rows[t, b]]
        h = Hs[t + 1, b]
        for j in range(H):
            h[j] = fast_tanh(r[j] + x[j])


@_jit
def rnn_backward_step(t: int, dhs: np.ndarray, dh: np.ndarray, Hs: np.ndarray, dZ: np.ndarray,
                      rows: np.ndarray, dW: np.ndarray) -> None:
    """Step t back: dZ[t] = (dhs[t] + dh) * (1 - h_t²) (dh: the gradient from step t + 1);
    when dW has rows, dW[rows[t, b]] += dZ[t, b]."""
    B, H = dh.shape
    one = Hs.dtype.type(1.0)
    per_step = dhs.shape[0] > 0
    scatter = dW.shape[0] > 0
    for b in range(B):
        d = dh[b]
        if per_step:
            up = dhs[t, b]
            for j in range(H):
                d[j] += up[j]
        h = Hs[t + 1, b]
        dz = dZ[t, b]
        for j in range(H):
            dz[j] = d[j] * (one - h[j] * h[j])
        if scatter:
            w = dW[rows[t, b]]
            for j in range(H):
                w[j] += dz[j]


# --------------------------------------------------------------------------- Adam
@_jit
def adam_update(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, beta1: float,
                beta2: float, lr_t: float, eps: float) -> None:
    """One Adam step over flat arrays in one pass, the formula of framework.nn.optimizers.Adam:
    m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g²; p -= lr_t * m / (sqrt(v) + eps)."""
    ty = p.dtype.type
    b1, b2, lr, ep = ty(beta1), ty(beta2), ty(lr_t), ty(eps)
    c1, c2 = ty(1.0 - beta1), ty(1.0 - beta2)
    for k in range(p.size):
        gk = g[k]
        mk = b1 * m[k] + c1 * gk
        vk = b2 * v[k] + c2 * gk * gk
        m[k] = mk
        v[k] = vk
        p[k] -= lr * mk / (np.sqrt(vk) + ep)


# --------------------------------------------------------------------------- warm-up
_WARM: set[str] = set()


def warm_up(kernel_set: str) -> None:
    """Compile (first run) or load from the disk cache the float32 kernels of ``kernel_set``
    ("lstm", "gru", "rnn" or "adam"; other names do nothing), once per process, by calling them
    on tiny arrays of the layouts the cells pass.  Numba does that lazily at the first real
    call; doing it when the model is built keeps it out of the first training step's time."""
    if kernel_set in _WARM:
        return
    _WARM.add(kernel_set)
    f = np.float32
    T, B, H, V = 2, 1, 2, 3
    rows = np.zeros((T, B), dtype=np.intp)
    up = np.zeros((T, B, H), dtype=f)
    hs = np.zeros((T + 1, B, H), dtype=f)
    dh = np.zeros((B, H), dtype=f)
    if kernel_set == "lstm":
        rec, table, state = np.zeros((B, 4 * H), f), np.zeros((V, 4 * H), f), hs.copy()
        act, tc, dz = np.zeros((T, B, 4 * H), f), np.zeros((T, B, H), f), np.zeros((T, B, 4 * H), f)
        lstm_forward_step(0, rec, table, rows, state, hs, tc, act)
        for dhs in (up, np.zeros((0, B, H), f)):
            lstm_backward_step(0, dhs, dh, dh.copy(), act, state, tc, dz, rows, table)
    elif kernel_set == "gru":
        table, act, rh = np.zeros((V, 3 * H), f), np.zeros((T, B, 3 * H), f), np.zeros((T, B, H), f)
        dz = np.zeros((T, B, 3 * H), f)
        gru_forward_gates(0, np.zeros((B, 2 * H), f), table, rows, hs, act, rh)
        gru_forward_state(0, np.zeros((B, H), f), table, rows, hs, act)
        for dhs in (up, np.zeros((0, B, H), f)):
            gru_backward_zn(0, dhs, dh, dh.copy(), act, hs, dz)
        gru_backward_r(0, dh.copy(), dh, dh.copy(), act, hs, dz, rows, table)
    elif kernel_set == "rnn":
        table, dz = np.zeros((V, H), f), np.zeros((T, B, H), f)
        rnn_forward_step(0, np.zeros((B, H), f), table, rows, hs)
        for dhs in (up, np.zeros((0, B, H), f)):
            rnn_backward_step(0, dhs, dh, hs, dz, rows, table)
    elif kernel_set == "adam":
        z = np.zeros(4, f)
        adam_update(z, z.copy(), z.copy(), z.copy(), 0.9, 0.999, 1e-3, 1e-8)
