"""Finite-difference gradient check of the classifier over real-valued vector sequences (dense
inputs, bidirectional, the ``classify`` task on a ``sequences`` corpus), for every registered
cell, on a ragged right-padded batch whose padding holds garbage.

Same method and tolerance as tests/nn/test_heads_gradcheck.py: float64 analytic gradients
against a 4th-order stencil in extended precision; the reference loss is the softmax
cross-entropy written out on the model's own forward pass.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from framework.nn.models.many_to_one import SequenceClassifier
from framework.plugins import load_plugins
from framework.registry import CELLS
from tests.helpers import LD, TOL, numeric_grad, record_gradcheck, rel_error

load_plugins()

D, H, C, T = 3, 3, 4, 5  # features per step, hidden size, classes, padded length
LENGTHS = np.array([5, 1, 3])
LABELS = np.array([3, 0, 2])


@pytest.mark.parametrize("cell", CELLS.names())
def test_dense_bidirectional_classifier_gradients(cell: str) -> None:
    model = SequenceClassifier(cell, D, C, H, dtype="float64", ids=False, bidirectional=True)
    rng = np.random.default_rng(41)
    for value in model.init_params(rng).values():  # nonzero biases, less symmetric weights
        value += rng.normal(0.0, 0.3, value.shape)
    inputs = rng.normal(0.0, 1.0, (T, len(LENGTHS), D))
    inputs[np.arange(T)[:, None] >= LENGTHS[None, :]] = 9.0  # must not reach any prediction
    out = model.loss_and_grads(inputs, LENGTHS, LABELS, reduction="mean")
    assert list(out.grads) == list(model.params)
    twin = copy.copy(model)
    twin.params = {k: v.astype(LD) for k, v in model.params.items()}
    x = inputs.astype(LD)

    def loss() -> LD:
        feats, _ = twin._encode(x, LENGTHS, None)
        z = feats @ twin.params["head.W"] + twin.params["head.b"]
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(LABELS)), LABELS].mean()

    np.testing.assert_allclose(out.loss, float(loss()), rtol=1e-12)
    worst = 0.0
    for key, value in twin.params.items():
        err = rel_error(out.grads[key], numeric_grad(loss, value))
        assert err < TOL, f"{cell} vector classifier {key}: relative error {err:.2e}"
        worst = max(worst, err)
    record_gradcheck(f"{cell} x classify-vectors-bi", worst)
    # The padding is never read: other garbage there leaves the loss unchanged.
    inputs[np.arange(T)[:, None] >= LENGTHS[None, :]] = -3.0
    assert model.loss_and_grads(inputs, LENGTHS, LABELS).loss == out.loss
