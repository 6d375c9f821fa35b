"""framework.course.hotloop agrees with the rnn plugin and with optimize."""

from __future__ import annotations

import numpy as np
import pytest

from framework import course
from framework.course.hotloop import CourseRNN, Name, names_for
from framework.errors import DataError
from framework.nn.models.language_model import CharRNN

N_A, VOCAB = 7, 5


def _charrnn_like(net: CourseRNN) -> CharRNN:
    model = CharRNN("rnn", vocab_size=VOCAB, hidden_size=N_A, init="course", dtype="float64")
    model.params = {k: np.array(v) for k, v in course.to_charrnn(net.course_params()).items()}
    return model


@pytest.mark.parametrize("inputs, targets", [
    ([None, 3, 1, 4, 1], [3, 1, 4, 1, 0]),  # the course's shape: zero first input, newline last
    ([None], [2]),  # a one-step name
    ([2, 2, 0], [2, 0, 4]),  # no zero input
])
def test_gradients_match_the_rnn_plugin(inputs, targets):
    net = CourseRNN(N_A, VOCAB, np.random.RandomState(1))
    net.P[...] = np.random.default_rng(0).normal(0.0, 0.5, net.P.shape)  # not the tiny init
    net.a[...] = np.random.default_rng(1).uniform(-0.9, 0.9, N_A)  # a carried hidden state
    a0 = net.a.copy()
    model = _charrnn_like(net)
    ids = np.array([-1 if x is None else x for x in inputs]).reshape(-1, 1)
    loss_ref, _, grads_ref, state = model.loss_and_grads(
        ids, np.array(targets).reshape(-1, 1), [(a0[None, :],)], reduction="sum")

    loss = net.gradients(Name(inputs, targets, N_A, VOCAB))

    assert loss == pytest.approx(loss_ref, rel=1e-13)
    got = course.to_charrnn({k: np.array(v) for k, v in net.course_params().items()})
    got_grads = course.to_charrnn({k[1:]: v for k, v in net.course_grads().items()})
    for key, ref in grads_ref.items():
        np.testing.assert_allclose(got_grads[key], ref, rtol=1e-12, atol=1e-15, err_msg=key)
    assert set(got) == set(grads_ref)
    np.testing.assert_allclose(net.a, state[0][0][0], rtol=1e-14)  # the state is carried on


def test_train_step_is_the_course_optimize():
    net = CourseRNN(N_A, VOCAB, np.random.RandomState(1))
    net.P[...] = np.random.default_rng(2).normal(0.0, 0.5, net.P.shape)
    params = {k: np.array(v) for k, v in net.course_params().items()}
    X, Y = [None] + [1] * 11, [1] * 11 + [0]  # dby[1] sums 11 steps: the clip is active

    loss_ref, grads_ref, a_last = course.optimize(X, Y, np.zeros((N_A, 1)), params, 0.01)
    loss = net.train_step(Name(X, Y, N_A, VOCAB), lr=0.01, max_value=5.0)

    assert loss == pytest.approx(loss_ref, rel=1e-13)
    assert np.abs(net.G).max() == 5.0  # the clip was active
    for key, value in net.course_params().items():
        np.testing.assert_allclose(value, params[key], rtol=1e-12, atol=1e-15, err_msg=key)
    for key, value in net.course_grads().items():
        np.testing.assert_allclose(value, grads_ref[key], rtol=1e-12, atol=1e-15, err_msg=key)
    np.testing.assert_allclose(net.a, a_last[:, 0], rtol=1e-14)


def test_course_params_are_views_of_the_flat_buffer():
    net = CourseRNN(N_A, VOCAB, np.random.RandomState(1))
    p = net.course_params()
    assert p["Wax"].shape == (N_A, VOCAB) and p["Wya"].shape == (VOCAB, N_A)
    assert p["b"].shape == (N_A, 1) and p["by"].shape == (VOCAB, 1)
    net.P += 1.0
    assert p["b"][0, 0] == 1.0 and p["Waa"][0, 0] == net.M[0, 0]


def test_the_seed_1_draw_order_is_the_course_s():
    net = CourseRNN(N_A, VOCAB, np.random.RandomState(1))
    rs = np.random.RandomState(1)
    Wax = rs.randn(N_A, VOCAB) * 0.01
    Waa = rs.randn(N_A, N_A) * 0.01
    Wya = rs.randn(VOCAB, N_A) * 0.01
    p = net.course_params()
    np.testing.assert_array_equal(p["Wax"], Wax)
    np.testing.assert_array_equal(p["Waa"], Waa)
    np.testing.assert_array_equal(p["Wya"], Wya)


def test_a_name_needs_matching_targets():
    with pytest.raises(ValueError, match="as many targets as inputs"):
        Name([None, 1], [1], N_A, VOCAB)


def test_a_vocabulary_larger_than_vocab_size_is_a_clear_error():
    char_to_ix = {"\n": 0, "a": 1, "b": 2, "z": 7}
    with pytest.raises(DataError, match=r"\['z'\].*pass vocab_size=8"):
        names_for(["ab"], char_to_ix, N_A, 4)
