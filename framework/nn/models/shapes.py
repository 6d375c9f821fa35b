"""Parameter names and shapes of a model, computed without allocating: what checkpoints check."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def stack_shapes(stacks: Iterable[Any]) -> dict[str, tuple[int, ...]]:
    """``{prefix}{layer}.{key}`` shapes of recurrent stacks, in their ``init_params`` order: each
    stack's layers bottom first (layer 0 reads the stack's input, the others its hidden size)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for stack in stacks:
        for layer in range(stack.num_layers):
            d_in = stack.input_size if layer == 0 else stack.hidden_size
            for key, shape in stack.cell.param_shapes(d_in).items():
                shapes[f"{stack.prefix}{layer}.{key}"] = tuple(shape)
    return shapes


def head_shapes(head: Any) -> dict[str, tuple[int, ...]]:
    """The (in, out) weight and (out,) bias of a head's dense layer."""
    dense = head.dense
    weight, bias = dense.keys
    return {weight: (dense.in_features, dense.out_features), bias: (dense.out_features,)}


__all__ = ["head_shapes", "stack_shapes"]
