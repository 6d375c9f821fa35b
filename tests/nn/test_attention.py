"""Attention plugins: masked weights, contexts, their dtypes and the one-line errors (the
gradients are checked in tests/nn/test_seq2seq_gradcheck.py)."""

from __future__ import annotations

import numpy as np
import pytest

from framework.errors import ConfigError, DataError
from framework.nn.attention import Additive, Dot, NoAttention, masked_softmax
from framework.registry import ATTENTIONS


def memory_batch(dtype=np.float64, size: int = 4):
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(5, 3, size)).astype(dtype)
    mask = np.arange(5)[:, None] < np.array([5, 2, 1])[None, :]
    return memory, mask, rng.normal(size=(3, 4)).astype(dtype)


def test_additive_is_the_course_formula_on_the_valid_positions():
    att = Additive(units=3, memory_size=4, query_size=4)
    params = att.init_params(np.random.default_rng(1), "float64")
    memory, mask, query = memory_batch()
    context, weights = att.attend(params, memory, mask, query)
    for b in range(3):
        n = mask[:, b].sum()
        e = np.tanh(memory[:n, b] @ params["attn.W_k"] + query[b] @ params["attn.W_q"]
                    + params["attn.b"]) @ params["attn.v"]
        a = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        np.testing.assert_allclose(weights[:n, b], a, rtol=1e-12)
        assert np.all(weights[n:, b] == 0)
        np.testing.assert_allclose(context[b], a @ memory[:n, b], rtol=1e-12)


def test_dot_scores_are_inner_products_and_general_adds_a_matrix():
    memory, mask, query = memory_batch()
    dot = Dot(memory_size=4, query_size=4)
    _, weights = dot.attend({}, memory, mask, query)
    scores = np.einsum("sbh,bh->sb", memory, query)
    np.testing.assert_allclose(weights, masked_softmax(scores, mask), rtol=1e-12)
    general = Dot(general=True, memory_size=4, query_size=3)
    params = general.init_params(np.random.default_rng(2), "float64")
    _, weights = general.attend(params, memory, mask, query[:, :3])
    scores = np.einsum("sbh,hq,bq->sb", memory, params["attn.W"], query[:, :3])
    np.testing.assert_allclose(weights, masked_softmax(scores, mask), rtol=1e-12)


def test_none_gives_no_context():
    att = NoAttention(memory_size=4, query_size=2)
    memory, mask, query = memory_batch()
    context, weights = att.attend({}, memory, mask, query[:, :2])
    assert att.context_size == 0 and context.shape == (3, 0) and not weights.any()


@pytest.mark.parametrize("name", ATTENTIONS.names())
def test_float32_by_default_and_float64_on_request(name):
    att = ATTENTIONS.build({"name": name}, memory_size=4, query_size=4)
    for dtype in (None, np.float64):
        params = (att.init_params(np.random.default_rng(0)) if dtype is None
                  else att.init_params(np.random.default_rng(0), dtype))
        want = np.float32 if dtype is None else np.float64
        assert all(v.dtype == want for v in params.values())
        memory, mask, query = memory_batch(want)
        context, weights = att.attend(params, memory, mask, query)
        assert context.dtype == want and weights.dtype == want


def test_bad_sizes_and_masks_are_one_line_errors():
    with pytest.raises(ConfigError, match="set attention.general=true"):
        ATTENTIONS.build({"name": "dot"}, memory_size=4, query_size=3)
    with pytest.raises(ConfigError, match="units must be >= 1"):
        ATTENTIONS.build({"name": "additive", "units": 0}, memory_size=4, query_size=3)
    att = Dot(memory_size=4, query_size=4)
    memory, mask, query = memory_batch()
    mask[:, 1] = False
    with pytest.raises(DataError, match="at least one valid position"):
        att.attend({}, memory, mask, query)
    with pytest.raises(DataError, match="boolean"):
        att.attend({}, memory, mask.astype(int), query)
