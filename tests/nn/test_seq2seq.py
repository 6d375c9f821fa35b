"""The seq2seq model outside its gradients: parameter shapes, dtypes, the step API against
teacher forcing, and one-line errors (gradients: tests/nn/test_seq2seq_gradcheck.py)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from framework.errors import ConfigError, DataError
from framework.nn.models.seq2seq import Seq2Seq
from framework.registry import ATTENTIONS


def batch() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        inputs=np.array([[1, 2], [3, -1], [0, -1]]), lengths=np.array([3, 1]),
        targets_in=np.array([[-1, -1], [0, 2], [1, -1]]),
        targets=np.array([[0, 2], [1, 4], [4, -1]]))


@pytest.mark.parametrize("attention", ATTENTIONS.names())
def test_shapes_dtypes_and_the_step_api_match_teacher_forcing(attention):
    model = Seq2Seq(4, 5, encoder_cell="gru", encoder_hidden=3, decoder_cell="lstm",
                    decoder_hidden=6, decoder_layers=2, attention=attention, embed_size=2)
    params = model.init_params(np.random.default_rng(0))
    assert list(model.param_shapes()) == list(params)
    assert all(params[k].shape == s for k, s in model.param_shapes().items())
    assert all(v.dtype == np.float32 for v in params.values())
    b = batch()
    loss_sum, count, grads = model.loss_and_grads(b)
    assert count == 5 and set(grads) == set(params)
    assert all(grads[k].dtype == np.float32 and grads[k].shape == params[k].shape
               for k in params)
    eval_sum, eval_count, weights = model.loss(b)
    assert (eval_sum, eval_count) == (loss_sum, count) and weights.shape == (3, 3, 2)
    # Feeding the teacher's ids one step at a time gives the same summed loss.
    memory = model.encode(b.inputs, b.lengths)
    state, total = None, 0.0
    for t in range(3):
        logits, state, w = model.decoder_step(b.targets_in[t], state, memory)
        np.testing.assert_array_equal(w, weights[t])
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        total -= sum(logp[k, y] for k, y in enumerate(b.targets[t]) if y >= 0)
    assert total == pytest.approx(loss_sum, rel=1e-5)


def test_bad_input_is_one_line():
    model = Seq2Seq(4, 5, encoder_hidden=3, decoder_hidden=6)
    with pytest.raises(ConfigError, match="no parameters yet"):
        model.encode(np.zeros((2, 1), dtype=int))
    model.init_params(np.random.default_rng(0))
    with pytest.raises(DataError, match=r"source ids contains ids outside \[-1, 3\]"):
        model.encode(np.array([[4]]))
    with pytest.raises(DataError, match="lengths must be in"):
        model.encode(np.array([[1], [2]]), np.array([3]))
    memory = model.encode(np.array([[1, 2]]))
    with pytest.raises(DataError, match="memory holds 2 sources"):
        model.decoder_step(np.array([-1]), None, memory)
    with pytest.raises(ConfigError, match="attention.general=true"):
        Seq2Seq(4, 5, encoder_hidden=3, decoder_hidden=5, attention="dot")


def test_the_attention_is_a_name_a_mapping_or_a_validated_config():
    for attention in ("additive", {"name": "additive", "units": 4},
                      ATTENTIONS.validate({"name": "additive", "units": 4})):
        model = Seq2Seq(4, 5, encoder_hidden=3, decoder_hidden=6, attention=attention)
        units = 10 if attention == "additive" else 4
        assert model.param_shapes()["attn.W_k"] == (6, units)
