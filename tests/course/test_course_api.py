"""framework.course and the dinosaurus_island preset against the numbers the course prints."""

from __future__ import annotations

import re

import numpy as np
import pytest

from framework import course
from framework.registry import DATASETS
from framework.training.trainer import Reporter, Trainer
from tests.conftest import needs_data, require_data
from tests.helpers import run_config

# (iteration, printed smoothed loss, the 7 printed names), as the 2021 course notebook prints.
CHECKPOINTS = [
    (0, "23.087336", "Nkzxwtdmfqoeyhsqwasjkjvu Kneb Kzxwtdmfqoeyhsqwasjkjvu Neb "
                     "Zxwtdmfqoeyhsqwasjkjvu Eb Xwtdmfqoeyhsqwasjkjvu"),
    (2000, "27.884160", "Liusskeomnolxeros Hmdaairus Hytroligoraurus Lecalosapaus Xusicikoraurus "
                        "Abalpsamantisaurus Tpraneronxeros"),
    (4000, "25.901815", "Mivrosaurus Inee Ivtroplisaurus Mbaaisaurus Wusichisaurus Cabaselachus "
                        "Toraperlethosdarenitochusthiamamumamaon"),
    (6000, "24.608779", "Onwusceomosaurus Lieeaerosaurus Lxussaurus Oma Xusteonosaurus "
                        "Eeahosaurus Toreonosaurus"),
    (8000, "24.070350", "Onxusichepriuon Kilabersaurus Lutrodon Omaaerosaurus Xutrcheps Edaksoje "
                        "Trodiktonus"),
    (10000, "23.844446", "Onyusaurus Klecalosaurus Lustodon Ola Xusodonia Eeaeosaurus "
                         "Troceosaurus"),
    (12000, "23.291971", "Onyxosaurus Kica Lustrepiosaurus Olaagrraiansaurus Yuspangosaurus "
                         "Eealosaurus Trognesaurus"),
]


def expected_text(upto: int) -> str:
    """The course's printed blocks: header, blank line, 7 names, blank line."""
    lines = []
    for j, loss, names in CHECKPOINTS:
        if j <= upto:
            lines += [f"Iteration: {j}, Loss: {loss}", "", *names.split(), ""]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def dinos():
    # Read exactly as the course does: the whole file, lower-cased (found as rnnlab finds it).
    require_data("dinos.txt")
    text = DATASETS.get("dinos")().locate().read_text().lower()
    chars = sorted(set(text))
    return text, {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))


def run_course_model(dinos, iterations: int, capsys, **kwargs):
    text, char_to_ix, ix_to_char = dinos
    params, last = course.model(text.split("\n"), ix_to_char, char_to_ix, iterations, **kwargs)
    return params, last, capsys.readouterr().out


# ------------------------------------------------------------------ clip, sample, optimize
def _d1() -> dict[str, np.ndarray]:
    np.random.seed(3)
    return {"dWax": np.random.randn(5, 3) * 10, "dWaa": np.random.randn(5, 5) * 10,
            "dWya": np.random.randn(2, 5) * 10, "db": np.random.randn(5, 1) * 10,
            "dby": np.random.randn(2, 1) * 10}


@pytest.mark.parametrize("max_value, dby1", [(10, 8.45833407), (5, 5.0)])
def test_clip_d1(max_value, dby1):
    grads = _d1()
    grads["da_next"] = np.ones((5, 1))  # the course's backward adds it; clip drops it
    before = {k: v.copy() for k, v in grads.items()}
    out = course.clip(grads, max_value)
    assert sorted(out) == ["dWaa", "dWax", "dWya", "db", "dby"]
    assert out["dWaa"][1][2] == max_value and out["dWax"][3][1] == -max_value
    assert out["dWya"][1][2] == 0.2971381536101662
    assert out["db"][4] == [max_value]
    np.testing.assert_allclose(out["dby"][1], [dby1], rtol=1e-8)
    for key, value in out.items():
        assert np.abs(value).max() <= max_value
        unclipped = np.abs(before[key]) <= max_value
        np.testing.assert_array_equal(value[unclipped], before[key][unclipped])
        np.testing.assert_array_equal(grads[key], before[key])  # input not mutated


def _randn_params() -> dict:
    """The course's sample/optimize test parameters: unscaled randn, global RNG, course order."""
    params = {"Wax": np.random.randn(100, 27), "Waa": np.random.randn(100, 100),
              "Wya": np.random.randn(27, 100)}
    params["b"], params["by"] = np.random.randn(100, 1), np.random.randn(27, 1)
    return params


def test_sample_d2(dinos):
    np.random.seed(24)
    params = _randn_params()
    indices = course.sample(params, dinos[1], 0)
    assert indices == [23, 16, 26, 26, 24, 3, 21, 1, 7, 24, 15, 3, 25, 20, 6, 13, 10, 8, 20, 12,
                       2, 0]


def test_sample_cap_appends_newline(dinos):
    # Version B/C parameters (seed 2) run into the 50-character cap: 50 draws, then the newline.
    np.random.seed(2)
    params = _randn_params()
    indices = course.sample(params, dinos[1], 0)
    assert len(indices) == 51 and indices[-1] == 0 and 0 not in indices[:-1]


def test_optimize_d3():
    np.random.seed(1)
    a_prev = np.random.randn(100, 1)
    params = _randn_params()
    Wya_before = params["Wya"].copy()
    loss, grads, a_last = course.optimize([12, 3, 5, 11, 22, 3], [4, 14, 11, 22, 25, 26],
                                          a_prev, params, learning_rate=0.01)
    np.testing.assert_allclose(loss, 126.50397572165389, rtol=1e-10)
    np.testing.assert_allclose(grads["dWaa"][1][2], 0.19470931534713587, rtol=1e-10)
    assert np.argmax(grads["dWax"]) == 93
    np.testing.assert_allclose(grads["dWya"][1][2], -0.007773876032002162, rtol=1e-10)
    # printed with 8 decimals: equal to half a unit of the last printed digit
    np.testing.assert_allclose(grads["db"][4], [-0.06809825], rtol=0, atol=5e-9)
    np.testing.assert_allclose(grads["dby"][1], [0.01538192], rtol=0, atol=5e-9)
    np.testing.assert_allclose(a_last[4], [-1.0])
    assert a_last.shape == (100, 1)
    assert all(np.abs(g).max() <= 5 for g in grads.values())
    assert not np.array_equal(params["Wya"], Wya_before)  # updated in place, as the course does


def test_layout_views_share_memory():
    rs = np.random.RandomState(0)
    params = {"Wax": rs.randn(4, 3), "Waa": rs.randn(4, 4), "Wya": rs.randn(3, 4),
              "b": rs.randn(4, 1), "by": rs.randn(3, 1)}
    fast = course.to_charrnn(params)
    fast["layers.0.W_x"][0, 1] = 42.0
    assert params["Wax"][1, 0] == 42.0
    back = course.to_course(fast)
    for key in course.COURSE_KEYS:
        assert np.shares_memory(back[key], params[key])
        np.testing.assert_array_equal(back[key], params[key])


# ------------------------------------------------------------------ model
def test_model_iterations_0_and_2000(dinos, capsys):
    params, last, out = run_course_model(dinos, 2001, capsys)
    assert out == expected_text(2000)
    assert last == "Tpraneronxeros\n"  # get_sample keeps the newline
    assert params["Wax"].shape == (50, 27) and params["b"].shape == (50, 1)
    assert params["Wya"].dtype == np.float64


def test_model_verbose_prints_the_first_example(dinos, capsys):
    _, _, out = run_course_model(dinos, 1, capsys, verbose=True)
    assert "single_example = turiasaurus" in out
    assert " X =  [None, 20, 21, 18, 9, 1, 19, 1, 21, 18, 21, 19] " in out
    assert "Y =        [20, 21, 18, 9, 1, 19, 1, 21, 18, 21, 19, 0]" in out
    assert out.index("j =  0 idx =  0") < out.index("Iteration: 0, Loss: 23.087336")


@pytest.mark.slow
def test_model_every_checkpoint_up_to_12000(dinos, capsys):
    _, _, out = run_course_model(dinos, 12001, capsys)
    assert out == expected_text(12000)


# ------------------------------------------------------------------ the preset through the Trainer
@needs_data("dinos.txt")
def test_dinosaurus_island_preset_prints_the_course_lines(tmp_path):
    lines: list[str] = []

    class Quiet:
        def log_metrics(self, values, step):
            pass

    rc = run_config(["experiment=dinosaurus_island", "train.steps=2001", "mlflow.enabled=false"])
    trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(Quiet(), lines.append))
    trainer.run()
    assert "\n".join(lines) + "\n" == expected_text(2000)
    assert re.fullmatch(r"Iteration: 2000, Loss: 27\.884160", trainer.report.sample_log[9])
