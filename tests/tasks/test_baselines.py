"""Baselines (majority class, n-gram naive Bayes, persistence, AR(p)) and task metrics, against
hand-computed values and the measured figures on the real data files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from framework.tasks.baselines import (
    ARModel,
    NaiveBayesNGrams,
    classify_baselines,
    forecast_baselines,
    majority_class,
    persistence,
)
from framework.tasks.metrics import (
    accuracy,
    classification_table,
    confusion_matrix,
    macro_f1,
    mae,
    per_class,
    rmse,
    save_confusion_png,
    save_forecast_png,
)
from tests.conftest import load_dataset
from tests.data.test_taskdata import data_file

# ------------------------------------------------------------------------------ classification


def test_majority_class():
    assert majority_class(np.array([2, 1, 2, 0, 1]), 4) == 1  # tie 1/2: the lower index
    assert majority_class(np.array([3, 3, 0]), 4) == 3


def test_naive_bayes_by_hand():
    nb = NaiveBayesNGrams(n=2, alpha=1.0, lower=False).fit(["ab", "b"], np.array([0, 1]), 2)
    # Grams: "ab" -> ^a ab b$ (class 0, 3 grams); "b" -> ^b b$ (class 1, 2 grams); V = 4.
    assert nb.grams("ab") == ["\x02a", "ab", "b\x03"] and len(nb.index) == 4
    expected_b = [math.log(0.5) + math.log(1 / 7) + math.log(2 / 7),
                  math.log(0.5) + math.log(2 / 6) + math.log(2 / 6)]
    unseen = [math.log(0.5) + 3 * math.log(1 / 7), math.log(0.5) + 3 * math.log(1 / 6)]
    assert np.allclose(nb.log_joint(["b", "zz"]), [expected_b, unseen])
    assert nb.predict(["b", "ab", "AB"]).tolist() == [1, 0, 1]  # case kept: "AB" is unseen
    lowered = NaiveBayesNGrams(n=2, lower=True).fit(["ab", "b"], np.array([0, 1]), 2)
    assert lowered.predict(["AB"]).tolist() == [0]


def test_names_baselines_match_the_measured_figures():
    data_file("names/Russian.txt")
    corpus = load_dataset("names")
    b = classify_baselines(corpus)  # trigrams, add-one, lower-cased, one marker each side
    assert b["baseline_majority_accuracy"] == 928 / 1801  # Russian: 0.515
    assert b["baseline_nb_accuracy"] == 1455 / 1801  # 0.808
    assert b["baseline_nb_macro_f1"] == pytest.approx(0.4156, abs=1e-4)
    assert classify_baselines(corpus, n=2)["baseline_nb_accuracy"] == pytest.approx(0.777,
                                                                                    abs=5e-4)
    assert classify_baselines(corpus, n=4)["baseline_nb_accuracy"] == pytest.approx(0.811,
                                                                                    abs=5e-4)


# ------------------------------------------------------------------------------ forecasting


def test_persistence_aligns_with_the_targets():
    v = np.array([1.0, 2.0, 4.0, 8.0])
    assert persistence(v, 2)[:, 0].tolist() == [2.0, 4.0]  # forecasts of v[2], v[3]
    with pytest.raises(ValueError):
        persistence(v, 0)


def test_ar_recovers_its_coefficients():
    rng = np.random.default_rng(0)
    y = np.zeros(3000)
    for t in range(2, len(y)):
        y[t] = 0.5 + 0.6 * y[t - 1] - 0.2 * y[t - 2] + rng.normal(0, 0.1)
    ar = ARModel(2).fit(y[:2500])
    assert np.allclose(ar.coef[:, 0], [0.5, 0.6, -0.2], atol=0.03)
    c, a1, a2 = ar.coef[:, 0]
    pred = ar.one_step(y, 2500)
    assert pred.shape == (500, 1)
    assert np.allclose(pred[:, 0], c + a1 * y[2499:-1] + a2 * y[2498:-2])
    assert np.allclose(ar.next(y[:2600]), pred[100])
    with pytest.raises(Exception, match="lower task.window"):
        ARModel(5).fit(y[:10])


def test_sunspots_baselines_match_the_measured_figures():
    data_file("sunspots.csv")
    b = forecast_baselines(load_dataset("sunspots"), window=9)
    assert b["baseline_persistence_rmse"] == pytest.approx(33.276, abs=1e-3)  # quoted: 33.3
    assert b["baseline_ar_rmse"] == pytest.approx(19.440, abs=1e-3)  # quoted: 19.4
    assert b["baseline_persistence_mae"] == pytest.approx(25.444, abs=1e-3)
    assert b["baseline_ar_mae"] == pytest.approx(15.149, abs=1e-3)


def test_co2_baselines_match_the_measured_figures():
    data_file("co2.csv")
    b = forecast_baselines(load_dataset("co2"), window=52)
    assert b["baseline_persistence_rmse"] == pytest.approx(0.5130, abs=1e-4)  # quoted: 0.513
    assert b["baseline_ar_rmse"] == pytest.approx(0.4007, abs=1e-4)  # quoted: 0.401


# ------------------------------------------------------------------------------ metrics

Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 0, 2])


def test_confusion_matrix_and_per_class_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    s = per_class(cm)
    assert np.allclose(s["precision"], [1 / 2, 2 / 3, 1.0, 0.0])
    assert np.allclose(s["recall"], [1 / 2, 1.0, 1 / 2, 0.0])
    assert np.allclose(s["f1"], [1 / 2, 0.8, 2 / 3, 0.0])
    assert s["support"].tolist() == [2, 2, 2, 0]
    # Class 3 is neither true nor predicted: left out of the macro average.
    assert macro_f1(Y_TRUE, Y_PRED, 4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    table = classification_table(cm, ["a", "b", "c", "d"])
    assert "b             0.667   1.000  0.800        2" in table
    assert "macro F1" in table and table.rstrip().endswith("0.667        6")
    with pytest.raises(ValueError):
        confusion_matrix(Y_TRUE, Y_PRED, 2)


def test_rmse_mae_by_hand():
    truth, pred = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0])
    assert rmse(truth, pred) == pytest.approx(math.sqrt(4 / 3))
    assert mae(truth, pred) == pytest.approx(2 / 3)
    assert rmse(truth, pred, mask=np.array([True, True, False])) == 0.0
    two_d = np.zeros((2, 3, 1))
    mask = np.array([[True, True, False], [True, False, False]])
    assert mae(two_d, two_d + 1.0, mask) == 1.0
    with pytest.raises(ValueError):
        rmse(truth, pred[:2])


def test_pngs(tmp_path):
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    a = save_confusion_png(cm, ["Arabic", "Chinese", "Czech"], tmp_path / "cm" / "confusion.png",
                           title="names")
    values = np.sin(np.arange(50) / 4)
    b = save_forecast_png(np.arange(1950, 2000), values, 40,
                          {"one-step": values[40:] + 0.1, "recursive": values[40:] * 0.5},
                          tmp_path / "forecast.png", history=20, ylabel="sunspots")
    for path in (a, b):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
