"""Samplers: the course's seeded sample(), temperature/top-k/top-p, generic checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from framework.errors import ConfigError, DivergenceError
from framework.nn.samplers import Categorical, Greedy, Temperature, TopK, TopP
from framework.registry import SAMPLERS
from tests.helpers import builtin_names

BUILTIN = builtin_names(SAMPLERS)

D2_SEED0 = [23, 16, 26, 26, 24, 3, 21, 1, 7, 24, 15, 3, 25, 20, 6, 13, 10, 8, 20, 12, 2, 0]
D2_OLD_FIRST43 = [12, 17, 24, 14, 13, 9, 10, 22, 24, 6, 13, 11, 12, 6, 21, 15, 21, 14, 3, 2, 1,
                  21, 18, 24, 7, 25, 6, 25, 18, 10, 16, 2, 3, 8, 15, 12, 11, 7, 1, 12, 10, 2, 7]


def course_params(seed: int, n_a: int = 100, vocab: int = 27) -> dict[str, np.ndarray]:
    """The course's sample() test parameters: legacy seed, then Wax, Waa, Wya, b, by in order."""
    rs = np.random.RandomState(seed)
    return {"Wax": rs.randn(n_a, vocab), "Waa": rs.randn(n_a, n_a), "Wya": rs.randn(vocab, n_a),
            "b": rs.randn(n_a, 1), "by": rs.randn(vocab, 1)}


def course_style_sample(params, sampler, sample_index: int = 0) -> list[int]:
    """The course's sample() loop (column vectors, W @ x), with our sampler making each choice."""
    vocab, n_a = params["Wya"].shape
    x, a_prev = np.zeros((vocab, 1)), np.zeros((n_a, 1))
    idx, out = -1, []
    while idx != 0 and len(out) != 50:
        a = np.tanh(params["Wax"] @ x + params["Waa"] @ a_prev + params["b"])
        z = params["Wya"] @ a + params["by"]
        idx = sampler(z.ravel(), rng=np.random.default_rng(), step=len(out),
                      sample_index=sample_index)
        out.append(idx)
        x = np.zeros((vocab, 1))
        x[idx] = 1
        a_prev = a
    if len(out) == 50:
        out.append(0)
    return out


def test_course_seeded_categorical_reproduces_d2():
    assert course_style_sample(course_params(24), Categorical(course_seed=0)) == D2_SEED0


def test_course_seed_offsets_by_sample_index():
    params = course_params(24)
    assert course_style_sample(params, Categorical(course_seed=0), sample_index=3) == \
        course_style_sample(params, Categorical(course_seed=3), sample_index=0)


def test_course_seeded_categorical_reproduces_old_version_prefix():
    # Versions B/C drew the parameters after seed 2; the tail after index 42 is not portable.
    out = course_style_sample(course_params(2), Categorical(course_seed=0))
    assert out[:43] == D2_OLD_FIRST43 and len(out) == 51 and out[-1] == 0


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def frequencies(sampler, logits, n=20000, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    draws = [sampler(logits, rng=rng, step=0, sample_index=0) for _ in range(n)]
    return np.bincount(draws, minlength=len(logits)) / n


def test_categorical_matches_softmax():
    logits = np.array([0.5, 2.0, -1.0, 1.0, 0.0])
    np.testing.assert_allclose(frequencies(Categorical(), logits), softmax(logits), atol=0.015)


def test_temperature_matches_renormalised_power():
    logits = np.array([0.5, 2.0, -1.0, 1.0, 0.0])
    for t in (0.5, 2.0):
        expected = softmax(np.log(softmax(logits)) / t)  # the course: log(p)/T, renormalised
        np.testing.assert_allclose(frequencies(Temperature(temperature=t), logits), expected,
                                   atol=0.015)


def test_temperature_to_zero_approaches_greedy():
    rng = np.random.default_rng(1)
    greedy = Greedy()
    for _ in range(200):
        logits = rng.standard_normal(30) * 3
        pick = Temperature(temperature=1e-6)(logits, rng=rng, step=0, sample_index=0)
        assert pick == greedy(logits, rng=rng, step=0, sample_index=0)
    # and the mass on the argmax grows monotonically as T falls
    logits = np.array([1.0, 1.5, 0.2])
    masses = [frequencies(Temperature(temperature=t), logits, n=4000)[1] for t in (1.0, 0.3, 0.1)]
    assert masses[0] < masses[1] < masses[2] and masses[2] > 0.99


def test_top_k_never_picks_outside_top_k():
    rng = np.random.default_rng(2)
    for _ in range(50):
        logits = rng.standard_normal(40)
        top = set(np.argsort(logits)[-5:].tolist())
        sampler = TopK(k=5, temperature=2.0)
        picks = {sampler(logits, rng=rng, step=0, sample_index=0) for _ in range(100)}
        assert picks <= top
    logits = rng.standard_normal(10)
    assert TopK(k=1)(logits, rng=rng, step=0, sample_index=0) == int(np.argmax(logits))


def test_top_k_renormalises_within_the_k():
    logits = np.array([3.0, 0.0, 2.0, 1.0])
    kept = softmax(logits[[0, 2]])
    freq = frequencies(TopK(k=2), logits)
    np.testing.assert_allclose(freq[[0, 2]], kept, atol=0.015)
    assert freq[1] == freq[3] == 0


def test_top_p_keeps_smallest_set_with_mass_p():
    probs = np.array([0.05, 0.4, 0.3, 0.15, 0.1])
    logits = np.log(probs)
    # sorted: 0.4, 0.3, 0.15 (cumulative 0.85 >= 0.8); 0.4 + 0.3 = 0.7 < 0.8 is not enough
    freq = frequencies(TopP(p=0.8), logits)
    nucleus = [1, 2, 3]
    assert freq[0] == freq[4] == 0
    np.testing.assert_allclose(freq[nucleus], probs[nucleus] / probs[nucleus].sum(), atol=0.015)
    assert set(np.flatnonzero(frequencies(TopP(p=0.3), logits, n=500))) == {1}


def test_top_p_of_one_is_plain_temperature_sampling():
    logits = np.random.default_rng(3).standard_normal(12)
    a = [TopP(p=1.0, temperature=0.7)(logits, rng=r, step=0, sample_index=0)
         for r in [np.random.default_rng(4)] for _ in range(50)]
    b = [Temperature(temperature=0.7)(logits, rng=r, step=0, sample_index=0)
         for r in [np.random.default_rng(4)] for _ in range(50)]
    assert a == b


def test_masked_logits_are_never_picked():
    logits = np.array([-np.inf, 0.0, -np.inf, 1.0])
    for name in BUILTIN:
        sampler = SAMPLERS.build({"name": name})
        assert set(np.flatnonzero(frequencies(sampler, logits, n=300))) <= {1, 3}


@pytest.mark.parametrize("name", BUILTIN)
def test_non_finite_logits_raise_divergence(name):
    sampler = SAMPLERS.build({"name": name})
    with pytest.raises(DivergenceError):
        sampler(np.array([0.0, np.nan, 1.0]), rng=np.random.default_rng(), step=0,
                sample_index=0)


# ---- the built-in schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
def test_schema_rejects_bad_values(name):
    schema = SAMPLERS.schema(name)
    numeric = [f.name for f in dataclasses.fields(schema)
               if f.type in ("float", "int", "int | None", float, int)]
    for field in numeric:
        with pytest.raises(ConfigError, match=rf"{field}.*-1"):
            SAMPLERS.validate({"name": name, field: -1})
        with pytest.raises(ValueError):
            schema(**{field: -1})


def test_specific_ranges():
    for node in ({"name": "temperature", "temperature": 0}, {"name": "top_k", "k": 0},
                 {"name": "top_p", "p": 0.0}, {"name": "top_p", "p": 1.5},
                 {"name": "top_k", "k": 2.5}, {"name": "categorical", "course_seed": "x"}):
        with pytest.raises(ConfigError):
            SAMPLERS.validate(node)
    assert SAMPLERS.validate({"name": "top_p", "p": 1}).p == 1.0
    assert SAMPLERS.validate({"name": "categorical", "course_seed": 7}).course_seed == 7
