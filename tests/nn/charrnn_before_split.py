"""CharRNN's training step as it was written before the stack and the output layer were split
apart, frozen verbatim: the oracle for the bit-identity test of the split model."""

from __future__ import annotations

from typing import Any

import numpy as np


def _layer_params(model: Any, layer: int) -> dict[str, np.ndarray]:
    prefix = f"layers.{layer}."
    return {k[len(prefix) :]: v for k, v in model.params.items() if k.startswith(prefix)}


def _forward(model: Any, inputs: np.ndarray, state0: list, dropout_rng: Any) -> tuple:
    x: np.ndarray = inputs
    stateT = []
    tape = []
    rate = model.dropout if dropout_rng is not None else 0.0
    for layer in range(model.num_layers):
        params = _layer_params(model, layer)
        hs, sT, cache = model.cell.forward(
            params, x, state0[layer], layer_input_is_ids=layer == 0
        )
        stateT.append(tuple(np.array(s) for s in sT))
        mask = None
        if rate > 0.0:
            draw = np.float32 if model.dtype == np.float32 else np.float64
            mask = (dropout_rng.random(hs.shape, dtype=draw) >= rate).astype(model.dtype)
            mask *= model.dtype.type(1.0 / (1.0 - rate))
            x = hs * mask
        else:
            x = hs
        tape.append((params, cache, mask))
    return x, stateT, tape


def _softmax_xent(logits: np.ndarray, targets: np.ndarray) -> tuple[float, int, np.ndarray]:
    logits -= logits.max(axis=1, keepdims=True)
    valid = targets >= 0
    rows = np.flatnonzero(valid)
    cols = targets[rows]
    picked = logits[rows, cols]
    probs = np.exp(logits, out=logits)
    sums = probs.sum(axis=1)
    loss_sum = float(np.log(sums[rows]).sum(dtype=np.float64) - picked.sum(dtype=np.float64))
    probs /= sums[:, None]
    probs[rows, cols] -= 1
    if rows.size != targets.size:
        probs[~valid] = 0
    return loss_sum, int(rows.size), probs


def loss_and_grads(model: Any, inputs: np.ndarray, targets: np.ndarray, state0: list,
                   reduction: str = "mean", dropout_rng: Any = None) -> tuple:
    """The old ``CharRNN.loss_and_grads`` after input checking (``state0`` given)."""
    T, B = inputs.shape
    top, stateT, tape = _forward(model, inputs, state0, dropout_rng)
    logits = np.matmul(top.reshape(T * B, model.hidden_size), model.params["out.W"])
    logits += model.params["out.b"]
    loss_sum, n_tokens, dlogits = _softmax_xent(logits, targets.reshape(-1))
    if reduction == "mean" and n_tokens > 0:
        dlogits *= model.dtype.type(1.0 / n_tokens)
    H = model.hidden_size
    W_out = model.params["out.W"]
    grads = {
        "out.W": np.matmul(top.reshape(T * B, H).T, dlogits),
        "out.b": dlogits.sum(axis=0),
    }
    dx = np.matmul(dlogits, W_out.T).reshape(T, B, H)
    for layer in range(model.num_layers - 1, -1, -1):
        params, cache, mask = tape[layer]
        if mask is not None:
            dx *= mask
        layer_grads, dx, _ = model.cell.backward(params, dx, None, cache)
        for key, value in layer_grads.items():
            grads[f"layers.{layer}.{key}"] = value
    return loss_sum, n_tokens, grads, stateT
