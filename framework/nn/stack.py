"""The recurrent stack (layers of one cell plugin) and CharRNN, that stack under a per-step softmax.

Everything that is about *stacking* lives here once (cells know nothing about it): feeding each
layer's hidden states to the next and inverted dropout after every layer's output during
training (:class:`RecurrentStack`).  The output layer of the language model is
:class:`framework.heads.LMHead`: one (T*B, H) @ (H, V) matmul over all positions with a
row-max-stabilised softmax cross-entropy; target id -1 is ignored (no loss, no gradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.cell import Cell, as_dtype
from framework.nn.heads import LMHead, check_reduction, softmax_xent
from framework.registry import CELLS

State = list  # one state tuple per layer: (h,) or (h, c), each (B, H)
Tape = list  # one (layer params, cell cache, dropout mask or None) per layer, bottom first


def check_ids(ids: Any, name: str, low: int, high: int, ndim: int) -> np.ndarray:
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


def build_cell(
    cell: str | Cell, hidden_size: int, init: str, cell_options: dict | None = None
) -> Cell:
    """A registered cell plugin built from its name (plugins are loaded on first use), or
    ``cell`` itself when it is already a Cell."""
    if isinstance(cell, Cell):
        return cell
    if cell not in CELLS:
        from framework.plugins import load_plugins

        load_plugins()
    node = {"name": cell, "hidden_size": int(hidden_size), "init": init}
    node.update(cell_options or {})
    return CELLS.build(node)


def check_stack_config(num_layers: int, dropout: float) -> None:
    if int(num_layers) < 1:
        raise ConfigError(f"model.num_layers must be >= 1, got {num_layers}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")


class RecurrentStack:
    """``num_layers`` layers of one cell; layer i > 0 reads the hidden states of layer i - 1.

    The stack holds no parameters: they are the entries ``{prefix}{i}.{W_x,W_h,b}`` of the
    model's flat dict, passed to every call.  Layer 0 reads token ids (T, B) through the cell's
    input projection (id -1 is a zero input) when ``ids`` is true, else dense inputs (T, B, D).
    During training (a ``dropout_rng`` is given) inverted dropout is applied to every layer's
    output, the top layer's included, so a head reads the dropped-out top states; the final
    states are never dropped.
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        *,
        ids: bool = True,
        prefix: str = "layers.",
    ) -> None:
        check_stack_config(num_layers, dropout)
        self.cell = cell
        self.input_size = int(input_size)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.ids = bool(ids)
        self.prefix = prefix

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    def init_params(self, rng: Any, dtype: Any) -> dict[str, np.ndarray]:
        """Each layer's cell parameters, bottom layer first (the cell's own draw order)."""
        params: dict[str, np.ndarray] = {}
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else self.hidden_size
            for key, value in self.cell.init_params(d_in, rng, dtype).items():
                params[f"{self.prefix}{layer}.{key}"] = value
        return params

    def zero_state(self, batch: int, dtype: Any) -> State:
        return [self.cell.zero_state(batch, dtype) for _ in range(self.num_layers)]

    def layer_params(self, params: dict[str, np.ndarray], layer: int) -> dict[str, np.ndarray]:
        prefix = f"{self.prefix}{layer}."
        return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}

    def check_state(self, state: Sequence | None, batch: int, dtype: Any) -> State:
        if state is None:
            return self.zero_state(batch, dtype)
        if len(state) != self.num_layers:
            raise DataError(
                f"state has {len(state)} layers but the model has {self.num_layers}; "
                "start from model.zero_state(batch)"
            )
        return list(state)

    def forward(
        self,
        params: dict[str, np.ndarray],
        inputs: np.ndarray,
        state0: State | None = None,
        dropout_rng: Any = None,
    ) -> tuple[np.ndarray, State, Tape]:
        """Run every layer from ``state0`` (None: zeros): (top layer's hidden states (T, B, H)
        after dropout, final state of every layer (own copies), tape for :meth:`backward`).
        The top states may be a read-only view of the cell's cache."""
        if state0 is None:
            state0 = [None] * self.num_layers  # each cell starts from zeros of its dtype
        x: np.ndarray = inputs
        stateT: State = []
        tape: Tape = []
        rate = self.dropout if dropout_rng is not None else 0.0
        for layer in range(self.num_layers):
            lp = self.layer_params(params, layer)
            hs, sT, cache = self.cell.forward(
                lp, x, state0[layer], layer_input_is_ids=self.ids and layer == 0
            )
            stateT.append(tuple(np.array(s) for s in sT))  # own copies, detached from the cache
            mask = None
            if rate > 0.0:
                # Inverted dropout: scale the kept units at training time so evaluation needs
                # no rescaling.  Drawn in the model dtype (no float64 temporaries).
                dt = hs.dtype
                draw = np.float32 if dt == np.float32 else np.float64
                mask = (dropout_rng.random(hs.shape, dtype=draw) >= rate).astype(dt)
                mask *= dt.type(1.0 / (1.0 - rate))
                x = hs * mask
            else:
                x = hs
            tape.append((lp, cache, mask))
        return x, stateT, tape

    def backward(
        self,
        tape: Tape,
        dtop: np.ndarray | None = None,
        dstateT: Sequence | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, State]:
        """Gradients of a loss whose gradient wrt the top states (after dropout) is ``dtop``
        (T, B, H), consumed in place, and wrt the final states is ``dstateT`` (one tuple per
        layer, entries may be None); either may be None.  Returns (parameter gradients, top
        layer first; d loss / d inputs, None for token ids; d loss / d initial state per
        layer)."""
        grads: dict[str, np.ndarray] = {}
        dstate0: State = [()] * self.num_layers
        dx = dtop
        for layer in range(self.num_layers - 1, -1, -1):
            lp, cache, mask = tape[layer]
            if mask is not None and dx is not None:
                dx *= mask
            dsT = None if dstateT is None else dstateT[layer]
            layer_grads, dx, dstate0[layer] = self.cell.backward(lp, dx, dsT, cache)
            for key, value in layer_grads.items():
                grads[f"{self.prefix}{layer}.{key}"] = value
        return grads, dx, dstate0


def param_shapes(cell: Cell, vocab_size: int, num_layers: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of :meth:`CharRNN.init_params`'s arrays, in its order, unallocated."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(num_layers):
        d_in = vocab_size if layer == 0 else cell.hidden_size
        for key, shape in cell.param_shapes(d_in).items():
            shapes[f"layers.{layer}.{key}"] = shape
    shapes["out.W"] = (cell.hidden_size, vocab_size)
    shapes["out.b"] = (vocab_size,)
    return shapes


class CharRNN:
    """Character-level recurrent language model: a :class:`RecurrentStack` over token ids
    under an :class:`~framework.nn.heads.LMHead` (a softmax over the vocabulary at every step)."""

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
        check_stack_config(num_layers, dropout)
        self.vocab_size = int(vocab_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.init = init
        self.dtype = as_dtype(dtype)
        self.cell = build_cell(cell, self.hidden_size, init, cell_options)
        self.cell_name = self.cell.name
        self.stack = RecurrentStack(self.cell, self.vocab_size, self.num_layers, self.dropout)
        self.head = LMHead(self.hidden_size, self.vocab_size, init)
        self.params: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ parameters and state
    def init_params(self, rng: Any) -> dict[str, np.ndarray]:
        """Cells in layer order, then the output layer (course: Wax, Waa, then Wya)."""
        params = self.stack.init_params(rng, self.dtype)
        params.update(self.head.init_params(rng, self.dtype))
        self.params = params
        return params

    def zero_state(self, batch: int) -> State:
        return self.stack.zero_state(batch, self.dtype)

    def _layer_params(self, layer: int) -> dict[str, np.ndarray]:
        return self.stack.layer_params(self.params, layer)

    def _check_state(self, state: Sequence | None, batch: int) -> State:
        return self.stack.check_state(state, batch, self.dtype)

    # ------------------------------------------------------------------ the stack
    def _forward(
        self, inputs: np.ndarray, state0: State, dropout_rng: Any
    ) -> tuple[np.ndarray, State, Tape]:
        """Run every layer; returns (top layer output after dropout, final states, tape)."""
        return self.stack.forward(self.params, inputs, state0, dropout_rng)

    def _logits(self, top: np.ndarray) -> np.ndarray:
        return self.head.logits(self.params, top)

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
        check_reduction(reduction)
        inputs, targets = self._check_batch(inputs, targets)
        state0 = self._check_state(state0, inputs.shape[1])
        top, stateT, tape = self._forward(inputs, state0, dropout_rng)
        loss_sum, n_tokens, grads, dtop = self.head.loss_and_grads(
            self.params, top, targets, reduction
        )
        stack_grads, _, _ = self.stack.backward(tape, dtop)
        grads.update(stack_grads)
        return loss_sum, n_tokens, grads, stateT

    def loss(self, inputs: Any, targets: Any, state0: State | None) -> tuple[float, int, State]:
        """Evaluation loss (no dropout, no gradients): (loss_sum, n_tokens, final state)."""
        inputs, targets = self._check_batch(inputs, targets)
        state0 = self._check_state(state0, inputs.shape[1])
        top, stateT, _ = self._forward(inputs, state0, None)
        loss_sum, n_tokens = self.head.loss(self.params, top, targets)
        return loss_sum, n_tokens, stateT

    def step(self, ids: Any, state: State | None) -> tuple[np.ndarray, State]:
        """One time step for sampling: ids (B,) -> (logits (B, V) float64, next state)."""
        ids = check_ids(ids, "ids", -1, self.vocab_size, 1)
        state = self._check_state(state, ids.shape[0])
        top, stateT, _ = self._forward(ids[None, :], state, None)
        return self._logits(top).astype(np.float64), stateT

    # ------------------------------------------------------------------ helpers
    def _check_batch(self, inputs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
        if not self.params:
            raise ConfigError("the model has no parameters yet; call init_params(rng) first")
        inputs = check_ids(inputs, "inputs", -1, self.vocab_size, 2)
        targets = check_ids(targets, "targets", -1, self.vocab_size, 2)
        if inputs.shape != targets.shape:
            raise DataError(
                f"inputs {inputs.shape} and targets {targets.shape} must have the same (T, B) shape"
            )
        return inputs, targets

    _softmax_xent = staticmethod(softmax_xent)


__all__ = [
    "CharRNN",
    "RecurrentStack",
    "State",
    "Tape",
    "build_cell",
    "check_ids",
    "check_stack_config",
    "param_shapes",
]
