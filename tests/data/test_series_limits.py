"""Series values too large to scale in float64 are refused in one line naming the cause, at
training and at prediction, instead of NumPy overflow warnings and a wrong diagnosis."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from framework.data.corpora.series import MAX_MAGNITUDE, series_corpus
from framework.errors import ConfigError, DataError
from framework.tasks.forecast import check_history


def test_a_series_near_the_float64_limit_is_refused_as_too_large():
    values = np.tile([1.5e308, -1.2e308, 3.0], 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(DataError) as info:
            series_corpus("big", values, columns=["value"], source="big.csv")
    message = str(info.value)
    assert message == ("big.csv: column value has values as large as 1.5e+308, beyond the "
                       "1e+150 a series model can scale in float64; rescale the column (divide "
                       "it by a power of ten)")


def test_large_but_scalable_values_are_kept():
    corpus = series_corpus("ok", np.linspace(-MAX_MAGNITUDE, MAX_MAGNITUDE, 50), columns=["v"])
    assert np.isfinite(corpus.std).all() and corpus.std[0] > 0


def test_a_history_value_near_the_float64_limit_is_called_too_large():
    with pytest.raises(ConfigError, match="history has a value as large as 1e\\+308, beyond"):
        check_history([1.0, 2.0, 1e308], window=3)
    with pytest.raises(ConfigError, match="no NaN or infinity"):
        check_history([1.0, 2.0, float("inf")], window=3)
