"""CharRNN, the language model: a recurrent stack over token ids under a per-step softmax.

The output layer is :class:`framework.nn.heads.LMHead`: one (T*B, H) @ (H, V) matmul over all
positions with a row-max-stabilised softmax cross-entropy; target id -1 is ignored (no loss, no
gradient).  With an :class:`~framework.nn.embedding.Embedding`, the ids are looked up in its table
and the stack reads the (T, B, E) vectors; without one (the default, and every model before
words) the first layer's input projection is the lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.cell import Cell, as_dtype
from framework.nn.embedding import Embedding
from framework.nn.heads import LMHead, check_reduction, softmax_xent
from framework.nn.models.shapes import head_shapes, stack_shapes
from framework.nn.stack import (
    RecurrentStack,
    State,
    Tape,
    build_cell,
    check_ids,
    check_stack_config,
)


def param_shapes(cell: Cell, vocab_size: int, num_layers: int,
                 embedding_size: int | None = None) -> dict[str, tuple[int, ...]]:
    """Names and shapes of :meth:`CharRNN.init_params`'s arrays, in its order, unallocated."""
    embedding = None if embedding_size is None else Embedding(vocab_size, embedding_size)
    return CharRNN(cell, vocab_size, cell.hidden_size, num_layers,
                   embedding=embedding).param_shapes()


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
        embedding: Embedding | None = None,
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
        self.embedding = embedding
        if embedding is not None and embedding.vocab_size != self.vocab_size:
            raise ConfigError(f"the embedding has {embedding.vocab_size} rows but the vocabulary "
                              f"{self.vocab_size} tokens")
        if embedding is None:
            self.stack = RecurrentStack(self.cell, self.vocab_size, self.num_layers, self.dropout)
        else:
            self.stack = RecurrentStack(self.cell, embedding.size, self.num_layers, self.dropout,
                                        ids=False)
        self.head = LMHead(self.hidden_size, self.vocab_size, init)
        self.params: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ parameters and state
    def init_params(self, rng: Any, *, vectors: np.ndarray | None = None,
                    found: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The embedding table if any (``vectors``/``found``: pretrained rows, see
        :meth:`Embedding.init_params`), cells in layer order, then the output layer (course:
        Wax, Waa, then Wya)."""
        params: dict[str, np.ndarray] = {}
        if self.embedding is not None:
            params.update(self.embedding.init_params(rng, self.dtype, vectors=vectors,
                                                     found=found))
        params.update(self.stack.init_params(rng, self.dtype))
        params.update(self.head.init_params(rng, self.dtype))
        self.params = params
        return params

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of :meth:`init_params`'s arrays, in its order, unallocated."""
        table = self.embedding.param_shapes() if self.embedding is not None else {}
        return {**table, **stack_shapes([self.stack]), **head_shapes(self.head)}

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
        if self.embedding is not None:
            inputs = self.embedding.forward(self.params, inputs)[0]
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
        stack_grads, dx, _ = self.stack.backward(tape, dtop)
        grads.update(stack_grads)
        if self.embedding is not None:  # dx: the gradient of the looked-up vectors
            grads.update(self.embedding.backward(self.params, dx, inputs))
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


__all__ = ["CharRNN", "param_shapes"]
