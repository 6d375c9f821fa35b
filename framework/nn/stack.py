"""CharRNN: a stack of recurrent cells plus a softmax output layer over characters.

Everything that is about *stacking* lives here once (cells know nothing about it): feeding each
layer's hidden states to the next, inverted dropout after every layer's output during training,
and the output layer, which is one (T*B, H) @ (H, V) matmul over all positions with a
row-max-stabilised softmax cross-entropy.  Target id -1 is ignored (no loss, no gradient).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.cell import Cell, as_dtype
from framework.registry import CELLS

State = list  # one state tuple per layer: (h,) or (h, c), each (B, H)


_MALLOC_TUNED = False


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed blocks of up to 32 MiB in the heap for reuse.

    A training step allocates ~5-15 MB of short-lived arrays (activations, caches, gradients).
    By default glibc hands blocks that large back to the OS on free (mmap, heap trimming), so
    every step page-faults them in again: ~2,700 minor faults and 4-7 ms of kernel time per
    LSTM H128-256 / B64 step, 15-20% of the step (measured with getrusage, docs/performance.md).
    This is what ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` do; if the user set
    either, or the C library is not glibc, nothing is changed.  Cost: the heap stays at its peak
    size instead of shrinking between steps.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        libc = ctypes.CDLL(None)
    except (ValueError, OSError, AttributeError):  # no confstr name / no C library handle
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h> constants
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 128 << 20)


def _check_ids(ids: Any, name: str, low: int, high: int, ndim: int) -> np.ndarray:
    """Token ids as an intp array of the expected rank, every value in [low, high)."""
    arr = np.asarray(ids)
    if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"{name} must be a {ndim}-D integer array of token ids, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    if arr.size and (arr.min() < low or arr.max() >= high):
        raise DataError(
            f"{name} contains ids outside [{low}, {high - 1}] (min {arr.min()}, max {arr.max()}); "
            "encode the text with the model's vocabulary"
        )
    return arr.astype(np.intp, copy=False)


class CharRNN:
    """Character-level recurrent language model (see CONTRACT.md "Model")."""

    def __init__(
        self,
        cell: str | Cell,
        vocab_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        init: str = "xavier",
        dtype: str = "float32",
        cell_options: dict | None = None,
    ) -> None:
        if int(vocab_size) < 1:
            raise ConfigError(f"vocab_size must be >= 1, got {vocab_size}")
        if int(num_layers) < 1:
            raise ConfigError(f"model.num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
        self.vocab_size = int(vocab_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.init = init
        self.dtype = as_dtype(dtype)
        if isinstance(cell, Cell):
            self.cell = cell
        else:
            node = {"name": cell, "hidden_size": self.hidden_size, "init": init}
            node.update(cell_options or {})
            self.cell = CELLS.build(node)
        self.cell_name = self.cell.name
        self.params: dict[str, np.ndarray] = {}
        _keep_freed_memory()

    # ------------------------------------------------------------------ parameters and state
    def init_params(self, rng: Any) -> dict[str, np.ndarray]:
        """Cells in layer order, then the output layer (course: Wax, Waa, then Wya)."""
        params: dict[str, np.ndarray] = {}
        for layer in range(self.num_layers):
            d_in = self.vocab_size if layer == 0 else self.hidden_size
            for key, value in self.cell.init_params(d_in, rng, self.dtype).items():
                params[f"layers.{layer}.{key}"] = value
        V, H = self.vocab_size, self.hidden_size
        if self.init == "course":
            W_out = (rng.standard_normal((V, H)) * 0.01).T  # the course's Wya, transposed
        else:
            limit = np.sqrt(6.0 / (H + V))
            W_out = rng.uniform(-limit, limit, size=(H, V))
        params["out.W"] = np.ascontiguousarray(W_out, dtype=self.dtype)
        params["out.b"] = np.zeros(V, dtype=self.dtype)
        self.params = params
        return params

    def zero_state(self, batch: int) -> State:
        return [self.cell.zero_state(batch, self.dtype) for _ in range(self.num_layers)]

    def _layer_params(self, layer: int) -> dict[str, np.ndarray]:
        prefix = f"layers.{layer}."
        return {k[len(prefix) :]: v for k, v in self.params.items() if k.startswith(prefix)}

    def _check_state(self, state: Sequence | None, batch: int) -> State:
        if state is None:
            return self.zero_state(batch)
        if len(state) != self.num_layers:
            raise DataError(
                f"state has {len(state)} layers but the model has {self.num_layers}; "
                "start from model.zero_state(batch)"
            )
        return list(state)

    # ------------------------------------------------------------------ the stack
    def _forward(
        self, inputs: np.ndarray, state0: State, dropout_rng: Any
    ) -> tuple[np.ndarray, State, list]:
        """Run every layer; returns (top layer output after dropout, final states, tape)."""
        x: np.ndarray = inputs
        stateT: State = []
        tape = []
        rate = self.dropout if dropout_rng is not None else 0.0
        for layer in range(self.num_layers):
            params = self._layer_params(layer)
            hs, sT, cache = self.cell.forward(
                params, x, state0[layer], layer_input_is_ids=layer == 0
            )
            stateT.append(tuple(np.array(s) for s in sT))  # own copies, detached from the cache
            mask = None
            if rate > 0.0:
                # Inverted dropout: scale the kept units at training time so evaluation needs
                # no rescaling.  Drawn in the model dtype (no float64 temporaries).
                draw = np.float32 if self.dtype == np.float32 else np.float64
                mask = (dropout_rng.random(hs.shape, dtype=draw) >= rate).astype(self.dtype)
                mask *= self.dtype.type(1.0 / (1.0 - rate))
                x = hs * mask
            else:
                x = hs
            tape.append((params, cache, mask))
        return x, stateT, tape

    def _logits(self, top: np.ndarray) -> np.ndarray:
        T, B, H = top.shape
        logits = np.matmul(top.reshape(T * B, H), self.params["out.W"])
        logits += self.params["out.b"]
        return logits

    def loss_and_grads(
        self,
        inputs: Any,
        targets: Any,
        state0: State | None,
        *,
        reduction: str = "mean",
        dropout_rng: Any = None,
    ) -> tuple[float, int, dict[str, np.ndarray], State]:
        """Summed cross-entropy (nats) over non-ignored targets, its token count, gradients of
        loss_sum / n_tokens ("mean") or loss_sum ("sum"), and the final state."""
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"train.loss reduction must be 'mean' or 'sum', got {reduction!r}")
        inputs, targets = self._check_batch(inputs, targets)
        T, B = inputs.shape
        state0 = self._check_state(state0, B)
        top, stateT, tape = self._forward(inputs, state0, dropout_rng)
        loss_sum, n_tokens, dlogits = self._softmax_xent(self._logits(top), targets.reshape(-1))
        if reduction == "mean" and n_tokens > 0:
            dlogits *= self.dtype.type(1.0 / n_tokens)
        H = self.hidden_size
        W_out = self.params["out.W"]
        grads: dict[str, np.ndarray] = {
            "out.W": np.matmul(top.reshape(T * B, H).T, dlogits),
            "out.b": dlogits.sum(axis=0),
        }
        dx = np.matmul(dlogits, W_out.T).reshape(T, B, H)
        for layer in range(self.num_layers - 1, -1, -1):
            params, cache, mask = tape[layer]
            if mask is not None:
                dx *= mask
            layer_grads, dx, _ = self.cell.backward(params, dx, None, cache)
            for key, value in layer_grads.items():
                grads[f"layers.{layer}.{key}"] = value
        return loss_sum, n_tokens, grads, stateT

    def loss(self, inputs: Any, targets: Any, state0: State | None) -> tuple[float, int, State]:
        """Evaluation loss (no dropout, no gradients): (loss_sum, n_tokens, final state)."""
        inputs, targets = self._check_batch(inputs, targets)
        state0 = self._check_state(state0, inputs.shape[1])
        top, stateT, _ = self._forward(inputs, state0, None)
        loss_sum, n_tokens, _ = self._softmax_xent(self._logits(top), targets.reshape(-1))
        return loss_sum, n_tokens, stateT

    def step(self, ids: Any, state: State | None) -> tuple[np.ndarray, State]:
        """One time step for sampling: ids (B,) -> (logits (B, V) float64, next state)."""
        ids = _check_ids(ids, "ids", -1, self.vocab_size, 1)
        state = self._check_state(state, ids.shape[0])
        top, stateT, _ = self._forward(ids[None, :], state, None)
        return self._logits(top).astype(np.float64), stateT

    # ------------------------------------------------------------------ helpers
    def _check_batch(self, inputs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
        if not self.params:
            raise ConfigError("the model has no parameters yet; call init_params(rng) first")
        inputs = _check_ids(inputs, "inputs", -1, self.vocab_size, 2)
        targets = _check_ids(targets, "targets", -1, self.vocab_size, 2)
        if inputs.shape != targets.shape:
            raise DataError(
                f"inputs {inputs.shape} and targets {targets.shape} must have the same (T, B) shape"
            )
        return inputs, targets

    @staticmethod
    def _softmax_xent(logits: np.ndarray, targets: np.ndarray) -> tuple[float, int, np.ndarray]:
        """Loss sum over valid targets, their count, and d(loss_sum)/d(logits) (in place of
        ``logits``).  Ignored rows (target -1) get zero gradient."""
        logits -= logits.max(axis=1, keepdims=True)
        valid = targets >= 0
        rows = np.flatnonzero(valid)
        cols = targets[rows]
        picked = logits[rows, cols]
        probs = np.exp(logits, out=logits)
        sums = probs.sum(axis=1)
        # The scalar loss is accumulated in float64 without float64 array temporaries.
        loss_sum = float(np.log(sums[rows]).sum(dtype=np.float64) - picked.sum(dtype=np.float64))
        probs /= sums[:, None]
        probs[rows, cols] -= 1
        if rows.size != targets.size:
            probs[~valid] = 0
        return loss_sum, int(rows.size), probs


__all__ = ["CharRNN", "State"]
