"""Gradient clipping: the course's clip, global-norm clipping, generic plugin properties."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from framework.errors import ConfigError
from framework.nn.clip import ClipStats, NoClip, NormClip, ValueClip, global_norm
from framework.registry import CLIPS
from tests.helpers import builtin_names

BUILTIN = builtin_names(CLIPS)


def course_d1_grads() -> dict[str, np.ndarray]:
    """The course's clip test: seed 3, then the five gradients drawn in this order, times 10."""
    rs = np.random.RandomState(3)
    return {
        "dWax": rs.randn(5, 3) * 10,
        "dWaa": rs.randn(5, 5) * 10,
        "dWya": rs.randn(2, 5) * 10,
        "db": rs.randn(5, 1) * 10,
        "dby": rs.randn(2, 1) * 10,
    }


def build(name: str, **options):
    return CLIPS.build({"name": name, **options})


@pytest.mark.parametrize(
    "max_value, expected",
    [
        (10, {"dWaa": 10.0, "dWax": -10.0, "dWya": 0.2971381536101662, "db": 10.0,
              "dby": 8.45833407}),
        (5, {"dWaa": 5.0, "dWax": -5.0, "dWya": 0.2971381536101662, "db": 5.0, "dby": 5.0}),
    ],
)
def test_value_clip_reproduces_course_d1(max_value, expected):
    grads = course_d1_grads()
    before = {k: v.copy() for k, v in grads.items()}
    stats = ValueClip(max_value=max_value)(grads)
    assert grads["dWaa"][1][2] == expected["dWaa"]
    assert grads["dWax"][3][1] == expected["dWax"]
    assert grads["dWya"][1][2] == expected["dWya"]
    assert grads["db"][4][0] == expected["db"]
    assert grads["dby"][1][0] == pytest.approx(expected["dby"], abs=5e-9)
    for key, g in grads.items():
        assert np.all(np.abs(g) <= max_value)
        inside = np.abs(before[key]) <= max_value
        np.testing.assert_array_equal(g[inside], before[key][inside])  # unclipped: unchanged
    n_changed = sum(int(np.count_nonzero(np.abs(b) > max_value)) for b in before.values())
    n_total = sum(b.size for b in before.values())
    assert stats.fraction_clipped == pytest.approx(n_changed / n_total)
    assert stats.norm == pytest.approx(math.sqrt(sum(float((b**2).sum()) for b in before.values())))


def test_norm_clip_rescales_to_max_norm():
    grads = course_d1_grads()
    before = {k: v.copy() for k, v in grads.items()}
    norm = global_norm(before)
    stats = NormClip(max_norm=1.0)(grads)
    assert stats.norm == pytest.approx(norm) and stats.fraction_clipped == 1.0
    assert global_norm(grads) == pytest.approx(1.0)
    for key in grads:  # direction unchanged
        np.testing.assert_allclose(grads[key], before[key] / norm, rtol=1e-12)


def test_norm_clip_below_threshold_changes_nothing():
    grads = course_d1_grads()
    before = {k: v.copy() for k, v in grads.items()}
    stats = NormClip(max_norm=1e6)(grads)
    assert stats.fraction_clipped == 0.0
    for key in grads:
        np.testing.assert_array_equal(grads[key], before[key])


def test_none_reports_norm_and_leaves_grads():
    grads = course_d1_grads()
    before = {k: v.copy() for k, v in grads.items()}
    stats = NoClip()(grads)
    assert stats == ClipStats(norm=global_norm(before), fraction_clipped=0.0)
    for key in grads:
        np.testing.assert_array_equal(grads[key], before[key])


def test_float32_overflowing_square_still_gives_finite_norm():
    grads = {"w": np.full((4,), 1e20, dtype=np.float32)}
    stats = NormClip(max_norm=5.0)(grads)
    assert stats.norm == pytest.approx(2e20, rel=1e-6)
    assert grads["w"].dtype == np.float32
    assert global_norm(grads) == pytest.approx(5.0, rel=1e-5)


def test_non_finite_gradients_are_reported_not_hidden():
    grads = {"w": np.array([1.0, np.nan, 3.0])}
    assert math.isnan(NormClip(max_norm=1.0)(grads).norm)
    assert np.isnan(grads["w"][1]) and grads["w"][0] == 1.0


def test_empty_grads():
    for name in BUILTIN:
        assert build(name)({}) == ClipStats(norm=0.0, fraction_clipped=0.0)


# ---- the built-in schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
def test_schema_rejects_bad_values(name):
    schema = CLIPS.schema(name)
    numeric = [f.name for f in dataclasses.fields(schema) if f.type in ("float", "int", float, int)]
    for field in numeric:
        for bad in (0, -1.5):
            with pytest.raises(ConfigError, match=rf"{field}.*{bad}"):
                CLIPS.validate({"name": name, field: bad})
        with pytest.raises(ConfigError):
            CLIPS.validate({"name": name, field: "lots"})
        with pytest.raises(ValueError):
            schema(**{field: -1.5})


def test_direct_construction_is_checked_like_a_config():
    with pytest.raises(ConfigError, match=r"^clip 'value': clip.max_value must be .* got -1"):
        ValueClip(max_value=-1)
    with pytest.raises(ConfigError, match=r"^clip 'norm': clip.max_norm must be .* got 0"):
        NormClip(max_norm=0)
    assert NormClip().cfg == CLIPS.validate({"name": "norm"})
