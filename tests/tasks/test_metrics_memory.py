"""Classification metrics in O(classes) memory: a classifier with very many classes is evaluated
without a (C, C) confusion matrix, and the figures match the confusion matrix's exactly."""

from __future__ import annotations

import tracemalloc

import numpy as np

from framework.tasks.metrics import (
    class_counts,
    classification_table,
    confusion_matrix,
    macro_f1,
    macro_f1_from_confusion,
    per_class,
)


def test_counts_give_the_confusion_matrix_s_figures_exactly():
    rng = np.random.default_rng(0)
    for n in (2, 3, 7):  # 3: counts and matrix would both be 3 x 3
        truth, pred = rng.integers(0, n, 200), rng.integers(0, n, 200)
        cm, counts = confusion_matrix(truth, pred, n), class_counts(truth, pred, n)
        for key, value in per_class(cm).items():
            np.testing.assert_array_equal(per_class(counts)[key], value)
        assert macro_f1(truth, pred, n) == macro_f1_from_confusion(cm)
        names = [f"c{i}" for i in range(n)]
        assert classification_table(counts, names) == classification_table(cm, names)


def test_macro_f1_of_100000_classes_needs_no_square_matrix():
    rng = np.random.default_rng(1)
    n = 100_000
    truth, pred = rng.integers(0, n, 5000), rng.integers(0, n, 5000)
    tracemalloc.start()
    score = macro_f1(truth, pred, n)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 0.0 <= score <= 1.0
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB for macro-F1 over {n} classes"
