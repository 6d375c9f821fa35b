"""The seq2seq proof of learning (framework/studies/seq2seq_dates.py): a short run in the default
suite, the measured recipe in the slow stage."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits

from framework.studies.seq2seq_dates import train

pytest.importorskip("faker", reason="the dates dataset needs the dates extra")
pytest.importorskip("babel", reason="the dates dataset needs the dates extra")


def test_a_few_steps_run_and_report():
    result = train(5, 100, 20, batch_size=16, log_every=0)
    assert 0.0 <= result["exact_match_greedy"] <= 1.0
    assert 0.0 <= result["exact_match_beam5"] <= 1.0
    assert result["smoothed_loss"] > 0


@pytest.mark.slow
def test_additive_attention_learns_the_dates():
    """1,500 steps on 4,000 dates (about 2 minutes on one core): >= 0.95 of 1,000 held-out
    dates exactly right (0.990 greedy, 0.991 beam 5 when measured)."""
    with threadpool_limits(1):
        result = train(1500, 4000, 1000, log_every=0)
    assert result["exact_match_greedy"] >= 0.95
