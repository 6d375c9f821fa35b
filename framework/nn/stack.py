"""The recurrent stack: layers of one cell plugin, fed one into the next.

Everything that is about *stacking* lives here once (cells know nothing about it): feeding each
layer's hidden states to the next and inverted dropout after every layer's output during
training (:class:`RecurrentStack`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.cell import Cell
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


__all__ = ["RecurrentStack", "State", "Tape", "build_cell", "check_ids", "check_stack_config"]
