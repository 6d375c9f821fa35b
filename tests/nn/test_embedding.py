"""The embedding layer: lookup with -1 as a zero vector, scatter-add backward, frozen tables,
seeded and pretrained initialisation, and finite-difference gradient checks (alone and feeding a
recurrent stack of every registered cell), by the method of tests/nn/test_cells_gradcheck.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from framework.errors import ConfigError, DataError
from framework.nn.embedding import Embedding
from framework.nn.models.language_model import CharRNN, param_shapes
from framework.nn.models.many_to_one import SequenceClassifier
from framework.nn.optimizers import Adam
from framework.nn.stack import RecurrentStack, build_cell
from framework.plugins import load_plugins
from framework.registry import CELLS
from tests.helpers import LD, TOL, numeric_grad, rel_error

load_plugins()
V, E, H, T, B = 6, 4, 3, 5, 3


def _ids(rng: np.random.Generator) -> np.ndarray:
    ids = rng.integers(-1, V, (T, B))
    ids[0, :] = [2, 2, 5]  # a repeated id: its row gets both contributions
    ids[-1, 0] = -1
    return ids


def test_forward_looks_up_rows_and_padding_is_zero() -> None:
    emb = Embedding(V, E)
    params = emb.init_params(np.random.default_rng(0), "float64")
    ids = np.array([[0, -1], [5, 3]])
    out, _ = emb.forward(params, ids)
    assert out.shape == (2, 2, E) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0, 0], params["embedding.W"][0])
    np.testing.assert_array_equal(out[1, 0], params["embedding.W"][5])
    np.testing.assert_array_equal(out[0, 1], np.zeros(E))


def test_backward_scatter_adds_and_padding_gets_nothing() -> None:
    emb = Embedding(V, E)
    params = emb.init_params(np.random.default_rng(0), "float64")
    ids = np.array([[1, 1], [-1, 4]])
    _, cache = emb.forward(params, ids)
    dx = np.arange(2 * 2 * E, dtype=np.float64).reshape(2, 2, E)
    g = emb.backward(params, dx, cache)["embedding.W"]
    np.testing.assert_array_equal(g[1], dx[0, 0] + dx[0, 1])
    np.testing.assert_array_equal(g[4], dx[1, 1])
    untouched = [0, 2, 3, 5]
    assert not g[untouched].any()  # the padded position's gradient went nowhere


def test_frozen_table_has_no_gradient_and_is_not_updated() -> None:
    emb = Embedding(V, E, trainable=False)
    params = emb.init_params(np.random.default_rng(0), "float32")
    before = params["embedding.W"].copy()
    _, cache = emb.forward(params, np.array([[1, 2]]))
    grads = emb.backward(params, np.ones((1, 2, E), np.float32), cache)
    assert grads == {}
    Adam(lr=0.1).step(params, grads)
    np.testing.assert_array_equal(params["embedding.W"], before)


def test_random_init_is_seeded() -> None:
    a = Embedding(V, E).init_params(np.random.default_rng(3), "float32")["embedding.W"]
    b = Embedding(V, E).init_params(np.random.default_rng(3), "float32")["embedding.W"]
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (V, E)


def test_pretrained_rows_are_copied_and_others_drawn_at_their_scale() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(0.0, 2.0, (V, E)).astype(np.float32)
    found = np.array([True, True, False, True, False, True])
    vectors[~found] = 0.0
    table = Embedding(V, E).init_params(np.random.default_rng(0), "float64", vectors=vectors,
                                        found=found)["embedding.W"]
    np.testing.assert_array_equal(table[found], vectors[found].astype(np.float64))
    assert table[~found].std() > 0.5  # drawn at the vectors' scale (2.0), not init_std (0.1)
    # The random rows are the same draws as without vectors, only scaled.
    plain = Embedding(V, E).init_params(np.random.default_rng(0), "float64")["embedding.W"]
    ratio = table[~found] / plain[~found]
    np.testing.assert_allclose(ratio, ratio.flat[0])


def test_bad_pretrained_vectors_are_one_line_errors() -> None:
    emb = Embedding(V, E)
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="model.embedding.size"):
        emb.init_params(rng, vectors=np.zeros((V, E + 1)), found=np.ones(V, bool))
    with pytest.raises(DataError, match="cover no word"):
        emb.init_params(rng, vectors=np.zeros((V, E)), found=np.zeros(V, bool))
    bad = np.ones((V, E))
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        emb.init_params(rng, vectors=bad, found=np.ones(V, bool))
    with pytest.raises(ConfigError, match="model.embedding.size"):
        Embedding(V, 0)
    with pytest.raises(DataError, match="ids outside"):
        emb.forward(emb.init_params(rng), np.array([[V]]))


def test_gradcheck_embedding_alone() -> None:
    emb = Embedding(V, E)
    rng = np.random.default_rng(4)
    params = emb.init_params(rng, "float64")
    ids = _ids(rng)
    R = rng.normal(size=(T, B, E))
    _, cache = emb.forward(params, ids)
    grad = emb.backward(params, R, cache)["embedding.W"]
    table = params["embedding.W"].astype(LD)

    def loss() -> LD:
        out, _ = emb.forward({"embedding.W": table}, ids)
        return (out * R).sum()

    assert rel_error(grad, numeric_grad(loss, table)) < TOL


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS.names())
def test_gradcheck_embedding_under_a_recurrent_stack(cell: str, layers: int) -> None:
    """loss = <top states, R> + <final states, R_T> of a stack reading embedded ids: the table's
    gradient and every layer's, against finite differences in extended precision."""
    emb = Embedding(V, E)
    stack = RecurrentStack(build_cell(cell, H, "xavier"), E, layers,
                           0.3 if layers > 1 else 0.0, ids=False)
    rng = np.random.default_rng(50 + layers)
    params = emb.init_params(rng, "float64")
    params.update(stack.init_params(rng, "float64"))
    for value in params.values():  # nonzero biases, less symmetric weights
        value += rng.normal(0.0, 0.3, value.shape)
    ids = _ids(rng)
    R = rng.normal(size=(T, B, H))
    RT = [tuple(rng.normal(size=(B, H)) for _ in s) for s in stack.zero_state(B, np.float64)]
    seed = 9 if layers > 1 else None

    def drop():
        return None if seed is None else np.random.default_rng(seed)

    x, cache = emb.forward(params, ids)
    _, _, tape = stack.forward(params, x, None, drop())
    grads, dx, _ = stack.backward(tape, R.copy(), RT)
    grads.update(emb.backward(params, dx, cache))
    assert set(grads) == set(params)

    p_ld = {k: v.astype(LD) for k, v in params.items()}

    def loss() -> LD:
        x_, _ = emb.forward(p_ld, ids)
        top, sT, _ = stack.forward(p_ld, x_, None, drop())
        total = (top * R).sum()
        for layer_s, layer_r in zip(sT, RT, strict=True):
            total += sum((s * r).sum() for s, r in zip(layer_s, layer_r, strict=True))
        return total

    for key, value in p_ld.items():
        err = rel_error(grads[key], numeric_grad(loss, value))
        assert err < TOL, f"{cell} {key}: relative error {err:.2e}"


# ------------------------------------------------------------------ inside the models
LENGTHS = np.array([5, 2, 1])
LABELS = np.array([2, 0, 1])


def _perturb(params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    for value in params.values():
        value += rng.normal(0.0, 0.3, value.shape)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS.names())
def test_gradcheck_classifier_over_an_embedding(cell: str, layers: int,
                                                bidirectional: bool) -> None:
    """Embedding -> (bidirectional) encoder -> dense softmax: the sentiment model's shape."""
    model = SequenceClassifier(cell, V, 3, H, num_layers=layers,
                               dropout=0.3 if layers > 1 else 0.0, dtype="float64",
                               bidirectional=bidirectional, embedding=Embedding(V, E))
    rng = np.random.default_rng(60 + layers + 2 * bidirectional)
    _perturb(model.init_params(rng), rng)
    assert list(model.params)[0] == "embedding.W"
    ids = _ids(rng)
    ids[np.arange(T)[:, None] >= LENGTHS[None, :]] = -1
    seed = 7 if layers > 1 else None

    def drop():
        return None if seed is None else np.random.default_rng(seed)

    out = model.loss_and_grads(ids, LENGTHS, LABELS, reduction="sum", dropout_rng=drop())
    assert list(out.grads) == list(model.params)
    twin = copy.copy(model)
    twin.params = {k: v.astype(LD) for k, v in model.params.items()}

    def loss() -> LD:
        feats, _ = twin._encode(ids, LENGTHS, drop())
        z = feats @ twin.params["head.W"] + twin.params["head.b"]
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(LABELS)), LABELS].sum()

    np.testing.assert_allclose(out.loss, float(loss()), rtol=1e-12)
    for key, value in twin.params.items():
        err = rel_error(out.grads[key], numeric_grad(loss, value))
        assert err < TOL, f"{cell} {key}: relative error {err:.2e}"


@pytest.mark.parametrize("cell", CELLS.names())
def test_gradcheck_language_model_over_an_embedding(cell: str) -> None:
    model = CharRNN(cell, V, H, num_layers=2, dropout=0.3, dtype="float64",
                    embedding=Embedding(V, E))
    rng = np.random.default_rng(70)
    _perturb(model.init_params(rng), rng)
    assert list(model.params) == list(param_shapes(model.cell, V, 2, embedding_size=E))
    assert {k: v.shape for k, v in model.params.items()} == param_shapes(model.cell, V, 2, E)
    ids = _ids(rng)
    targets = rng.integers(0, V, (T, B))
    _, n, grads, _ = model.loss_and_grads(ids, targets, None, reduction="mean",
                                          dropout_rng=np.random.default_rng(3))
    assert set(grads) == set(model.params) and n == T * B
    twin = copy.copy(model)
    twin.params = {k: v.astype(LD) for k, v in model.params.items()}
    twin.dtype = np.dtype(LD)

    def loss() -> LD:
        top, _, _ = twin._forward(ids, twin.zero_state(B), np.random.default_rng(3))
        z = twin._logits(top)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(T * B), targets.reshape(-1)].sum() / (T * B)

    for key, value in twin.params.items():
        err = rel_error(grads[key], numeric_grad(loss, value))
        assert err < TOL, f"{cell} {key}: relative error {err:.2e}"


def test_frozen_pretrained_embedding_in_a_classifier() -> None:
    model = SequenceClassifier("gru", V, 3, H, dtype="float64",
                               embedding=Embedding(V, E, trainable=False))
    vectors = np.arange(V * E, dtype=np.float32).reshape(V, E) / 10
    found = np.array([False, True, True, True, True, False])
    model.init_params(np.random.default_rng(0), vectors=vectors, found=found)
    np.testing.assert_array_equal(model.params["embedding.W"][found], vectors[found])
    before = model.params["embedding.W"].copy()
    out = model.loss_and_grads(_ids(np.random.default_rng(1)), None, LABELS)
    assert "embedding.W" not in out.grads and list(out.grads) == list(model.params)[1:]
    Adam(lr=0.1).step(model.params, out.grads)
    np.testing.assert_array_equal(model.params["embedding.W"], before)


def test_models_without_an_embedding_are_unchanged() -> None:
    """No embedding: the same parameter names and the same draws as before it existed."""
    model = SequenceClassifier("lstm", V, 3, H, dtype="float64")
    params = model.init_params(np.random.default_rng(0))
    assert "embedding.W" not in params and model.encoder.stacks[0].ids
    lm = CharRNN("lstm", V, H, dtype="float64")
    assert list(lm.init_params(np.random.default_rng(0))) == list(param_shapes(lm.cell, V, 1))
    with pytest.raises(ConfigError, match="embedding reads token ids"):
        SequenceClassifier("lstm", 4, 3, H, ids=False, embedding=Embedding(4, E))
