"""GRU cell in the char-rnn style (Karpathy's GRU.lua): the reset gate multiplies the previous
state *before* the candidate's recurrent matmul.

    r = σ(x W_xr + h_prev W_hr + b_r)        z = σ(x W_xz + h_prev W_hz + b_z)
    n = tanh(x W_xn + (r * h_prev) W_hn + b_n)
    h = (1 - z) * n + z * h_prev               (computed as n + z * (h_prev - n))

Fused layout: ``W_x`` (D, 3H), ``W_h`` (H, 3H), ``b`` (3H,), gate blocks **[r, z, n]**.  Per step
the r and z gates share one (B, H) @ (H, 2H) matmul; the candidate needs a second, (r*h) @ W_hn,
because r is applied before it (that is what makes this the char-rnn GRU rather than cuDNN's).
The pointwise math is written once (``gru_gates_forward``, ``gru_state_forward``,
``gru_backward_factors``, ``gru_backward_step``) on *gate-major* arrays (axis 0 = gate r, z, n;
each gate a contiguous block, see framework/nn/cell.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.nn.cell import (
    Cell,
    CellConfig,
    CompiledCache,
    backward_chunks,
    course_normal,
    fused,
    gate_major,
    sigmoid,
)
from framework.registry import CELLS

GATE_ORDER = ("r", "z", "n")
PRESCALE = (0.5, 0.5, 1.0)  # fast path: r and z pre-activations are halved (see gru_gates_forward)


# --------------------------------------------------------------------------- pointwise math
def gru_gates_forward(zrz: np.ndarray, *, halved: bool = False) -> None:
    """Activate the reset/update pre-activations (2, ...) in place: r, z = σ(.).

    ``halved=True`` (the fast path, which folds the factor 1/2 into its weight copies, exactly):
    ``zrz`` holds x/2 and σ(x) = (1 + tanh(x/2)) / 2 -- 3 passes instead of 4, no exp overflow
    (see lstm_gates_forward in cells/lstm.py for the precision note).
    """
    if halved:
        np.tanh(zrz, out=zrz)
        np.multiply(zrz, 0.5, out=zrz)
        np.add(zrz, 0.5, out=zrz)
    else:
        with np.errstate(over="ignore"):  # exp overflow of very negative inputs -> σ = 0
            sigmoid(zrz, out=zrz)


def gru_state_forward(
    zn: np.ndarray, z: np.ndarray, h_prev: np.ndarray, h_out: np.ndarray
) -> None:
    """n = tanh(zn) in place; h = (1 - z) * n + z * h_prev, as n + z * (h_prev - n)."""
    np.tanh(zn, out=zn)
    np.subtract(h_prev, zn, out=h_out)
    np.multiply(h_out, z, out=h_out)
    np.add(h_out, zn, out=h_out)


def gru_backward_factors(
    gates: np.ndarray, h_prev: np.ndarray, f_out: np.ndarray, scratch: np.ndarray
) -> None:
    """Upstream-independent local derivatives for any number of steps, gate-major f_out (3, ...)
    (the fast path calls it one step at a time, on cache-resident blocks, into its dz buffer)
    = [r(1-r)·h_prev, z(1-z)·(h_prev-n), (1-z)·(1-n²)], so dz_{z,n} = dh·f_{z,n} and
    dz_r = d(r*h_prev)·f_r.  ``scratch`` has the shape of h_prev."""
    rz, f_rz = gates[:2], f_out[:2]
    _, z, n = gates
    f_r, f_z, f_n = f_out
    np.subtract(1, rz, out=f_rz)
    np.multiply(f_rz, rz, out=f_rz)  # σ' for r and z together
    np.multiply(f_r, h_prev, out=f_r)
    np.subtract(h_prev, n, out=scratch)
    np.multiply(f_z, scratch, out=f_z)
    np.square(n, out=f_n)
    np.subtract(1, f_n, out=f_n)
    np.subtract(1, z, out=scratch)
    np.multiply(f_n, scratch, out=f_n)


def gru_backward_step(
    dh: np.ndarray,
    gates: np.ndarray,
    f: np.ndarray,
    dz: np.ndarray,
    W_hn_T: np.ndarray,
    W_hrz_T: np.ndarray,
    drh: np.ndarray,
    dh_prev: np.ndarray,
    back: np.ndarray,
) -> None:
    """One step back from the total gradient ``dh`` reaching h_t (dh is used as scratch).

    Fills the gate-major ``dz`` (3, B, H) with the pre-activation gradients and ``dh_prev``.
    ``W_hn_T`` is (H, H) and ``W_hrz_T`` the stacked (2, H, H) transposed recurrent blocks;
    ``drh`` (gradient wrt r*h_prev) and ``back`` (2, B, H) are scratch.  ``f`` may be ``dz``
    itself (the factors are then overwritten by the gradients)."""
    np.multiply(dh, f[1:], out=dz[1:])  # z and n
    np.matmul(dz[2], W_hn_T, out=drh)
    np.multiply(drh, f[0], out=dz[0])  # r
    np.matmul(dz[:2], W_hrz_T, out=back)
    np.add(back[0], back[1], out=dh_prev)
    np.multiply(drh, gates[0], out=drh)
    np.add(dh_prev, drh, out=dh_prev)
    np.multiply(dh, gates[1], out=dh)
    np.add(dh_prev, dh, out=dh_prev)


# --------------------------------------------------------------------------- fast plugin
@CELLS.register("gru", schema=CellConfig)
class GRUCell(Cell):
    """char-rnn GRU; three gate blocks [r, z, n], state (h,)."""

    gates = 3
    state_size = 1

    def course_blocks(self, input_size: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        # No course GRU exists; use the course's LSTM convention: per gate (in r, z, n order)
        # one randn(n_a, n_a + n_x) * 0.01 matrix over concat = [a_prev; xt].
        H = self.hidden_size
        W_x = np.empty((input_size, 3 * H))
        W_h = np.empty((H, 3 * H))
        for k in range(3):
            W = course_normal(rng, (H, H + input_size))
            W_h[:, k * H : (k + 1) * H] = W[:, :H].T
            W_x[:, k * H : (k + 1) * H] = W[:, H:].T
        return W_x, W_h

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
        kernels = self.kernels_for(dt)
        if kernels is not None:
            return self._forward_compiled(kernels, params, x, state0, ids)
        (h0,) = self.initial_state(state0, B, dt)
        W_h3 = gate_major(W_h, 3)  # (3, H, H) blocks r, z, n
        W_h3[:2] *= 0.5  # PRESCALE: r, z take x/2 (gru_gates_forward(halved=True))
        Hs = np.empty((T + 1, B, H), dtype=dt)
        RH = np.empty((T, B, H), dtype=dt)  # r * h_prev of every step, for dW_hn after the loop
        Hs[0] = h0
        G = self.project_inputs(params, x, ids, prescale=PRESCALE)  # (3, T, B, H) -> activations
        rec2 = self._ws.get("rec2", (2, B, H), dt)
        rec1 = self._ws.get("rec1", (B, H), dt)
        for t in range(T):
            g = G[:, t]
            h_prev = Hs[t]
            np.matmul(h_prev, W_h3[:2], out=rec2)  # r and z: one stacked matmul
            np.add(g[:2], rec2, out=g[:2])
            gru_gates_forward(g[:2], halved=True)
            np.multiply(g[0], h_prev, out=RH[t])
            np.matmul(RH[t], W_h3[2], out=rec1)  # the candidate sees r * h_prev
            np.add(g[2], rec1, out=g[2])
            gru_state_forward(g[2], g[1], h_prev, Hs[t + 1])
        hs = Hs[1:]
        hs.flags.writeable = False
        hT = Hs[T]
        hT.flags.writeable = False
        return hs, (hT,), (x, ids, Hs, G, RH)

    def backward(
        self,
        params: dict[str, np.ndarray],
        dhs: np.ndarray | None,
        dstateT: tuple | None,
        cache: Any,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple]:
        if isinstance(cache, CompiledCache):  # from _forward_compiled
            return self._backward_compiled(params, dhs, dstateT, cache)
        x, ids, Hs, G, RH = cache
        W_h = params["W_h"]
        dt = W_h.dtype
        T, B, H = RH.shape
        chunks = backward_chunks(T, 4 * B * H * dt.itemsize)  # 3 factor blocks + scratch
        scratch = self._ws.get("scratch", (chunks[0][1] - chunks[0][0], B, H), dt)
        dZ = self._ws.get("dZ", (3, T, B, H), dt)
        dh = self._ws.get("dh", (B, H), dt)
        drh = self._ws.get("drh", (B, H), dt)
        back = self._ws.get("back", (2, B, H), dt)
        dh_next = np.zeros((B, H), dtype=dt)
        if dstateT is not None and dstateT[0] is not None:
            dh_next[...] = dstateT[0]
        # (3, H, H) transposed blocks r, z, n, contiguous (faster stacked matmuls than views)
        W_hT = np.ascontiguousarray(gate_major(W_h, 3).transpose(0, 2, 1))
        for t0, t1 in chunks:
            # Factors for a chunk of steps (framework.nn.cell.backward_chunks), written straight
            # into dZ: gru_backward_step then overwrites each step's factors by its gradients.
            gru_backward_factors(G[:, t0:t1], Hs[t0:t1], dZ[:, t0:t1], scratch[: t1 - t0])
            for t in range(t1 - 1, t0 - 1, -1):
                self.total_dh(dhs, t, dh_next, out=dh)
                dz = dZ[:, t]
                gru_backward_step(dh, G[:, t], dz, dz, W_hT[2], W_hT[:2], drh, dh_next, back)
        # Weight gradients in big matmuls over all steps: r, z see h_prev; n sees r * h_prev.
        dZ3 = dZ.reshape(3, T * B, H)
        blocks = np.empty((3, H, H), dtype=dt)
        np.matmul(Hs[:-1].reshape(T * B, H).T, dZ3[:2], out=blocks[:2])
        np.matmul(RH.reshape(T * B, H).T, dZ3[2], out=blocks[2])
        dW_h = fused(blocks)
        dW_x, db, dx = self.input_grads(params, dZ, x, ids)
        return {"W_x": dW_x, "W_h": dW_h, "b": db}, dx, (dh_next,)

    # ------------------------------------------------------------------ cell.backend=numba
    def _forward_compiled(
        self, kernels: Any, params: dict[str, np.ndarray], x: np.ndarray, state0: tuple | None,
        ids: bool,
    ) -> tuple[np.ndarray, tuple, Any]:
        """The forward pass with the compiled kernels (framework/nn/numba_kernels.py): per step
        the r/z matmul, one kernel (r, z and r * h_prev), the candidate's matmul and a second
        kernel (n and h).  Gate activations are kept fused, (T, B, 3H)."""
        W_h = params["W_h"]
        dt = W_h.dtype
        T, B = x.shape[:2]
        H = self.hidden_size
        (h0,) = self.initial_state(state0, B, dt)
        Hs = np.empty((T + 1, B, H), dtype=dt)
        RH = np.empty((T, B, H), dtype=dt)
        A = np.empty((T, B, 3 * H), dtype=dt)
        Hs[0] = h0
        table, rows = self.compiled_inputs(params, x, ids)
        W_rz, rec_rz = self.padded_recurrent(W_h[:, : 2 * H], B, "rec_rz")
        W_n, rec_n = self.padded_recurrent(W_h[:, 2 * H :], B, "rec_n")
        out_rz, out_n = rec_rz[:, : 2 * H], rec_n[:, :H]
        gates, state = kernels.gru_forward_gates, kernels.gru_forward_state
        for t in range(T):
            np.matmul(Hs[t], W_rz, out=out_rz)
            gates(t, rec_rz, table, rows, Hs, A, RH)
            np.matmul(RH[t], W_n, out=out_n)
            state(t, rec_n, table, rows, Hs, A)
        hs = Hs[1:]
        hs.flags.writeable = False
        hT = Hs[T]
        hT.flags.writeable = False
        return hs, (hT,), CompiledCache((x, ids, Hs, A, RH, rows, W_rz, W_n, kernels))

    def _backward_compiled(
        self, params: dict[str, np.ndarray], dhs: np.ndarray | None, dstateT: tuple | None,
        cache: Any,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple]:
        x, ids, Hs, A, RH, rows, W_rz, W_n, kernels = cache
        dt = A.dtype
        T, B, H = RH.shape
        dZ = self._ws.get("dZ_fused", (T, B, 3 * H), dt)
        drh = self._ws.get("drh", (B, H), dt)
        carry = np.zeros((B, H), dtype=dt)  # the element-wise part of the gradient reaching h
        dh = np.zeros((B, H), dtype=dt)  # its matmul part
        if dstateT is not None and dstateT[0] is not None:
            dh[...] = dstateT[0]
        up = np.empty((0, B, H), dtype=dt) if dhs is None else np.ascontiguousarray(dhs, dtype=dt)
        scattered = np.zeros((params["W_x"].shape[0] + 1 if ids else 0, 3 * H), dtype=dt)
        W_rzT = self.padded_transpose(W_rz, "WT_rz")  # (2H, H)
        W_nT = self.padded_transpose(W_n, "WT_n")  # (H, H)
        zn, r = kernels.gru_backward_zn, kernels.gru_backward_r
        for t in range(T - 1, -1, -1):
            zn(t, up, dh, carry, A, Hs, dZ)
            dz = dZ[t]
            np.matmul(dz[:, 2 * H :], W_nT, out=drh)
            r(t, drh, dh, carry, A, Hs, dZ, rows, scattered)
            np.matmul(dz[:, : 2 * H], W_rzT, out=dh)
        dh += carry
        # Weight gradients in big matmuls over all steps: r, z see h_prev; n sees r * h_prev.
        dZ2 = dZ.reshape(T * B, 3 * H)
        dW_h = np.empty((H, 3 * H), dtype=dt)
        np.matmul(Hs[:-1].reshape(T * B, H).T, dZ2[:, : 2 * H], out=dW_h[:, : 2 * H])
        np.matmul(RH.reshape(T * B, H).T, dZ2[:, 2 * H :], out=dW_h[:, 2 * H :])
        dW_x, db, dx = self.compiled_input_grads(params, dZ, x, ids, scattered)
        return {"W_x": dW_x, "W_h": dW_h, "b": db}, dx, (dh,)


__all__ = [
    "GATE_ORDER",
    "GRUCell",
    "gru_backward_factors",
    "gru_backward_step",
    "gru_gates_forward",
    "gru_state_forward",
]
