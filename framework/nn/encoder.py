"""Many-to-one encoder: one or two recurrent stacks read right-padded sequences into one feature
vector per sequence (the top layer's hidden state at its last valid step).

A batch holds B sequences of lengths ``lengths`` (B,), right-padded to T steps.  The cells run all
T steps (their batched loops have no per-row stopping); the state after step ``length - 1`` is
the one used, so what the padding holds never reaches the loss, and the gradient sent into every
padded step is exactly zero.

Bidirectional (``bidirectional=True``): a forward and a backward stack, each ``num_layers`` deep
and each reading only its own direction (layer i of the backward stack reads layer i - 1 of the
backward stack, unlike PyTorch's multi-layer bidirectional RNN, which feeds both directions'
concatenation to the next layer).  The backward stack reads each sequence reversed *within its
length*, x[len-1], ..., x[0], followed by the padding, so the padding never comes first and its
state at step ``length - 1`` has just read x[0].  The features are [forward; backward] (B, 2H).

:meth:`SequenceEncoder.forward_steps` also returns the top layer's output at every step (what an
attention reads), the backward stack's realigned to source order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.errors import DataError
from framework.nn.cell import Cell
from framework.nn.stack import RecurrentStack, check_ids

# Which tasks may read a sequence backwards is the task's to say (framework/tasks/base.py,
# Task.bidirectional and Task.check); the encoder reads whichever way it is built.


def check_lengths(lengths: Any, steps: int, batch: int) -> np.ndarray:
    """Sequence lengths (B,) as intp, each in [1, T]; None means every sequence is T long."""
    if lengths is None:
        return np.full(batch, steps, dtype=np.intp)
    arr = np.asarray(lengths)
    if arr.shape != (batch,) or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"lengths must be a 1-D integer array of {batch} sequence lengths, got shape "
            f"{arr.shape} dtype {arr.dtype}"
        )
    if arr.size and (arr.min() < 1 or arr.max() > steps):
        raise DataError(
            f"lengths must be in [1, {steps}] (the padded length), got min {arr.min()} max "
            f"{arr.max()}; drop empty sequences before batching"
        )
    return arr.astype(np.intp, copy=False)


def reverse_index(lengths: np.ndarray, steps: int) -> np.ndarray:
    """(T, B) time index that reverses each column within its length and keeps its padding in
    place: idx[t, b] = lengths[b] - 1 - t for t < lengths[b], else t.  It is its own inverse."""
    t = np.arange(steps, dtype=np.intp)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def take_steps(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x[idx[t, b], b] for x (T, B) or (T, B, D): a new array."""
    cols = np.arange(x.shape[1], dtype=np.intp)[None, :]
    return x[idx, cols]


def check_inputs(inputs: Any, ids: bool, input_size: int) -> np.ndarray:
    """Token ids (T, B) in [-1, input_size) or dense finite inputs (T, B, input_size)."""
    if ids:
        return check_ids(inputs, "inputs", -1, input_size, 2)
    x = np.asarray(inputs)
    if x.ndim != 3 or x.shape[2] != input_size or not np.issubdtype(x.dtype, np.number):
        raise DataError(
            f"inputs must be a (T, B, {input_size}) array of real values, got shape {x.shape} "
            f"dtype {x.dtype}"
        )
    if not np.all(np.isfinite(x)):
        raise DataError("inputs contain NaN or Inf; fill the missing values first")
    return x


class SequenceEncoder:
    """One stack (parameters ``layers.{i}.*``) or, bidirectional, two (``fwd.layers.{i}.*`` then
    ``bwd.layers.{i}.*``), read into features (B, H) or (B, 2H)."""

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        *,
        ids: bool = True,
        bidirectional: bool = False,
    ) -> None:
        self.bidirectional = bool(bidirectional)
        prefixes = ("fwd.layers.", "bwd.layers.") if self.bidirectional else ("layers.",)
        self.stacks = tuple(
            RecurrentStack(cell, input_size, num_layers, dropout, ids=ids, prefix=p)
            for p in prefixes
        )
        self.cell = cell
        self.ids = bool(ids)
        self.input_size = int(input_size)

    @property
    def feature_size(self) -> int:
        return self.cell.hidden_size * len(self.stacks)

    def init_params(self, rng: Any, dtype: Any) -> dict[str, np.ndarray]:
        """The forward stack's layers bottom first, then the backward stack's."""
        params: dict[str, np.ndarray] = {}
        for stack in self.stacks:
            params.update(stack.init_params(rng, dtype))
        return params

    def forward(
        self,
        params: dict[str, np.ndarray],
        inputs: np.ndarray,
        lengths: np.ndarray,
        dropout_rng: Any = None,
    ) -> tuple[np.ndarray, Any]:
        """Features (B, feature_size) of checked ``inputs`` and ``lengths`` (see
        :func:`check_inputs`, :func:`check_lengths`), and the tape for :meth:`backward`.
        Zero initial states; dropout masks are drawn forward stack first."""
        _, feats, tape = self.forward_steps(params, inputs, lengths, dropout_rng, outputs=False)
        return feats, tape

    def forward_steps(
        self,
        params: dict[str, np.ndarray],
        inputs: np.ndarray,
        lengths: np.ndarray,
        dropout_rng: Any = None,
        *,
        outputs: bool = True,
    ) -> tuple[np.ndarray | None, np.ndarray, Any]:
        """As :meth:`forward`, plus the top layer's output at every step (T, B, feature_size)
        in source order (the backward stack's realigned: row t has read x[t:len]), which an
        attention reads; padded steps hold values that a mask must exclude.  ``outputs=False``
        skips building them (None)."""
        T, B = inputs.shape[:2]
        last = (lengths - 1, np.arange(B, dtype=np.intp))
        rev = reverse_index(lengths, T) if self.bidirectional else None
        feats, tapes, tops = [], [], []
        for k, stack in enumerate(self.stacks):
            x = inputs if k == 0 else take_steps(inputs, rev)
            top, _, tape = stack.forward(params, x, None, dropout_rng)
            feats.append(top[last])
            tapes.append((tape, top.shape))
            if outputs:
                tops.append(top if k == 0 else take_steps(top, rev))
        out = feats[0] if len(feats) == 1 else np.concatenate(feats, axis=1)
        steps = None
        if outputs:
            steps = tops[0] if len(tops) == 1 else np.concatenate(tops, axis=2)
        return steps, out, (tapes, last, rev)

    def backward(
        self, params: dict[str, np.ndarray], tape: Any, dfeats: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """(parameter gradients, d loss / d inputs or None for token ids) from the gradient
        ``dfeats`` (B, feature_size) of the features."""
        return self.backward_steps(params, tape, dfeats, None)

    def backward_steps(
        self,
        params: dict[str, np.ndarray],
        tape: Any,
        dfeats: np.ndarray | None,
        doutputs: np.ndarray | None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """As :meth:`backward`, from the gradients of the features (B, F) and of the per-step
        outputs (T, B, F) of :meth:`forward_steps`; either may be None."""
        tapes, last, rev = tape
        H = self.cell.hidden_size
        grads: dict[str, np.ndarray] = {}
        dx_total = None
        for k, (stack, (stack_tape, shape)) in enumerate(zip(self.stacks, tapes, strict=True)):
            part = slice(k * H, (k + 1) * H)
            if doutputs is None:
                dtop = np.zeros(shape, dtype=dfeats.dtype)
            else:
                own = doutputs[:, :, part]
                dtop = np.array(own if k == 0 else take_steps(own, rev))
            if dfeats is not None:
                dtop[last] += dfeats[:, part]
            stack_grads, dx, _ = stack.backward(stack_tape, dtop)
            grads.update(stack_grads)
            if dx is not None:
                dx = dx if k == 0 else take_steps(dx, rev)
                dx_total = dx if dx_total is None else dx_total + dx
        return grads, dx_total


__all__ = [
    "SequenceEncoder",
    "check_inputs",
    "check_lengths",
    "reverse_index",
    "take_steps",
]
