"""Optimizers: reference formulas (min-char-rnn Adagrad, Keras Adam), dtype, state round trip."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from framework.errors import CheckpointError, ConfigError
from framework.nn.optimizers import SGD, Adagrad, Adam, Momentum, RMSprop
from framework.registry import OPTIMIZERS
from tests.helpers import builtin_names

BUILTIN = builtin_names(OPTIMIZERS)


def make(dtype=np.float64, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"layers.0.W_x": rng.standard_normal((6, 8)).astype(dtype),
            "layers.0.b": rng.standard_normal(8).astype(dtype),
            "out.W": rng.standard_normal((8, 6)).astype(dtype)}


def grads_at(step: int, params, dtype=np.float64) -> dict[str, np.ndarray]:
    """Deterministic pseudo-gradients that change with the step."""
    rng = np.random.default_rng(1000 + step)
    return {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}


def copy(d):
    return {k: v.copy() for k, v in d.items()}


# ---- reference formulas -------------------------------------------------------------------------


def test_sgd_is_the_course_update():
    p, g = make(), grads_at(0, make())
    expected = {k: p[k] - 0.05 * g[k] for k in p}
    SGD(lr=0.05).step(p, g)
    for k in p:
        np.testing.assert_array_equal(p[k], expected[k])


def test_adagrad_matches_min_char_rnn_bit_for_bit():
    params, ref = make(), make()
    mem = {k: np.zeros_like(v) for k, v in ref.items()}
    opt = Adagrad(lr=0.1)
    for step in range(5):
        g = grads_at(step, params)
        opt.step(params, g)
        for k in ref:  # min-char-rnn's loop body, verbatim in meaning
            mem[k] += g[k] * g[k]
            ref[k] += -0.1 * g[k] / np.sqrt(mem[k] + 1e-8)
    for k in ref:
        np.testing.assert_array_equal(params[k], ref[k])


def test_adagrad_first_step_with_zero_gradient_is_finite():
    p = {"w": np.ones(3)}
    Adagrad().step(p, {"w": np.zeros(3)})  # eps inside the sqrt: 0 / sqrt(1e-8) = 0
    np.testing.assert_array_equal(p["w"], np.ones(3))


def test_adam_hand_computed_first_steps():
    p = {"w": np.array([1.0, -2.0])}
    opt = Adam()  # lr 0.001, beta1 0.9, beta2 0.999, eps 1e-8
    opt.step(p, {"w": np.array([0.5, -0.25])})
    # step 1: m = 0.1 g, v = 0.001 g^2, lr_t = 0.001 sqrt(0.001) / 0.1; the update is
    # lr_t * 0.1 g / (sqrt(0.001) |g| + 1e-8) = 0.001 * sign(g) * s / (s + 1e-8 / |g|)
    s = math.sqrt(0.001)
    expected1 = [1.0 - 0.001 * s / (s + 1e-8 / 0.5), -2.0 + 0.001 * s / (s + 1e-8 / 0.25)]
    np.testing.assert_allclose(p["w"], expected1, rtol=0, atol=1e-15)
    assert p["w"][0] == pytest.approx(0.99900000063, abs=1e-11)
    # step 2 with g = 0.1 for both, by the Keras 2.0.6 formulas
    g2 = 0.1
    for i, g1 in enumerate([0.5, -0.25]):
        m = 0.9 * (0.1 * g1) + 0.1 * g2
        v = 0.999 * (0.001 * g1 * g1) + 0.001 * g2 * g2
        lr_t = 0.001 * math.sqrt(1 - 0.999**2) / (1 - 0.9**2)
        expected1[i] -= lr_t * m / (math.sqrt(v) + 1e-8)
    opt.step(p, {"w": np.array([g2, g2])})
    np.testing.assert_allclose(p["w"], expected1, rtol=0, atol=1e-15)


def test_momentum_hand_computed():
    p = {"w": np.array([1.0])}
    opt = Momentum(lr=0.1, momentum=0.5)
    opt.step(p, {"w": np.array([1.0])})  # v = 1, p = 1 - 0.1
    opt.step(p, {"w": np.array([2.0])})  # v = 0.5 + 2 = 2.5, p = 0.9 - 0.25
    assert p["w"][0] == pytest.approx(0.65, abs=1e-15)
    p = {"w": np.array([1.0])}
    nag = Momentum(lr=0.1, momentum=0.5, nesterov=True)
    nag.step(p, {"w": np.array([1.0])})  # v = 1, p -= 0.1 (1 + 0.5)
    assert p["w"][0] == pytest.approx(0.85, abs=1e-15)


def test_rmsprop_is_char_rnn_form():
    p = {"w": np.array([1.0, 1.0])}
    opt = RMSprop(lr=0.01, decay=0.95)
    g = np.array([0.2, -3.0])
    opt.step(p, {"w": g})
    ms = 0.05 * g * g
    np.testing.assert_allclose(p["w"], 1.0 - 0.01 * g / (np.sqrt(ms) + 1e-8), rtol=1e-15)


def test_float32_update_has_no_float64_upcast():
    # With float32 arithmetic all the way, SGD equals p - float32(lr) * g bit for bit; a float64
    # scalar upcast would round differently in some elements.
    p, g = make(np.float32), grads_at(0, make(np.float32), np.float32)
    expected = {k: p[k] - np.float32(0.01) * g[k] for k in p}
    SGD(lr=0.01).step(p, g)
    for k in p:
        assert p[k].dtype == np.float32
        np.testing.assert_array_equal(p[k], expected[k])
    p, g = make(np.float32), grads_at(0, make(np.float32), np.float32)
    mem = {k: g[k] * g[k] for k in p}
    lr, eps = np.float32(0.1), np.float32(1e-8)
    expected = {k: p[k] - (lr * g[k]) / np.sqrt(mem[k] + eps) for k in p}
    Adagrad(lr=0.1).step(p, g)
    for k in p:
        np.testing.assert_array_equal(p[k], expected[k])


def test_state_dict_is_a_snapshot():
    params, opt = make(), Adam()
    opt.step(params, grads_at(0, params))
    snap = opt.state_dict()
    m_before = snap["m.out.W"].copy()
    opt.step(params, grads_at(1, params))
    np.testing.assert_array_equal(snap["m.out.W"], m_before)


def test_load_state_dict_rejects_foreign_or_mismatched_state():
    params = make()
    adam = Adam()
    adam.step(params, grads_at(0, params))
    with pytest.raises(CheckpointError, match="another optimizer"):
        SGD().load_state_dict(adam.state_dict())
    with pytest.raises(CheckpointError, match="another optimizer"):
        Adam().load_state_dict({"t": np.array(3)})
    with pytest.raises(CheckpointError, match="'t'"):
        Adam().load_state_dict({})
    state = adam.state_dict()
    state["m.out.W"] = np.zeros((2, 2))
    state["v.out.W"] = np.zeros((2, 2))
    other = Adam()
    other.load_state_dict(state)
    with pytest.raises(CheckpointError, match="shape"):
        other.step(params, grads_at(1, params))


# ---- the built-in schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
def test_schema_rejects_bad_values(name):
    schema = OPTIMIZERS.schema(name)
    numeric = [f.name for f in dataclasses.fields(schema) if f.type in ("float", "int", float, int)]
    assert "lr" in numeric
    for field in numeric:
        with pytest.raises(ConfigError, match=rf"{field}.*-1"):
            OPTIMIZERS.validate({"name": name, field: -1})
        with pytest.raises(ValueError):
            schema(**{field: -1})


def test_specific_ranges():
    for node in ({"name": "sgd", "lr": 0}, {"name": "momentum", "momentum": 1.0},
                 {"name": "adam", "beta1": 1.0}, {"name": "adam", "beta2": 1.5},
                 {"name": "rmsprop", "decay": 1.0}, {"name": "adagrad", "eps": 0},
                 {"name": "momentum", "nesterov": "maybe"}, {"name": "sgd", "lr": "fast"}):
        with pytest.raises(ConfigError):
            OPTIMIZERS.validate(node)
    with pytest.raises(ConfigError, match=r"^optimizer 'adam': optimizer.lr must be .*, got -1"):
        Adam(lr=-1)
