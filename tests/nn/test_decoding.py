"""Decoding plugins: beam search against greedy and against an exhaustive search, scores against
independently summed log-probabilities, the samplers inside ``sample``, and bad widths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from framework.errors import ConfigError
from framework.nn.decoding import Beam, Greedy, Sample
from framework.nn.models.language_model import CharRNN
from framework.nn.models.seq2seq import Seq2Seq
from framework.registry import DECODERS, SAMPLERS

EOS = 0


class Table:
    """A step model whose next-id log-probabilities depend on the previous id only."""

    def __init__(self, logp: np.ndarray) -> None:
        self.logp = logp  # (V + 1, V): row 0 is the start (-1), row i + 1 follows id i

    def zero_state(self, batch: int) -> np.ndarray:
        return np.full(batch, -1)

    def step(self, ids: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.logp[np.asarray(ids) + 1] * 1.0, np.asarray(ids)

    def sequence_logp(self, ids: list[int], finished: bool) -> float:
        prev, total = -1, 0.0
        for i in [*ids, EOS] if finished else ids:
            total += self.logp[prev + 1, i]
            prev = i
        return total


def trap() -> Table:
    """Greedy takes 'a' (0.6), then the end (0.5): 0.30; 'b' then the end is 0.4 * 0.9 = 0.36."""
    p = np.array([[0.0, 0.6, 0.4],  # start: end, a, b
                  [0.0, 0.5, 0.5],  # unused
                  [0.5, 0.25, 0.25],  # after a
                  [0.9, 0.05, 0.05]])  # after b
    with np.errstate(divide="ignore"):
        return Table(np.log(p))


def test_beam_finds_the_best_sequence_greedy_misses():
    model = trap()
    greedy = Greedy().decode(model, 1, max_length=6, eos_id=EOS)[0]
    assert greedy.ids == [1] and greedy.finished
    assert greedy.score == pytest.approx(np.log(0.30), abs=1e-12)
    for width in (2, 3):
        best = Beam(width=width).decode(model, 1, max_length=6, eos_id=EOS)[0]
        assert best.ids == [2] and best.finished
        assert best.score == pytest.approx(np.log(0.36), abs=1e-12)


def random_table(seed: int, V: int = 5) -> Table:
    z = np.random.default_rng(seed).normal(size=(V + 1, V)) * 2
    return Table(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))


@pytest.mark.parametrize("seed", range(6))
def test_width_one_is_greedy_and_scores_are_summed_log_probabilities(seed):
    model = random_table(seed)
    greedy = Greedy().decode(model, 4, max_length=8, eos_id=EOS)
    beam = Beam(width=1).decode(model, 4, max_length=8, eos_id=EOS)
    assert greedy == beam
    for decoder in (Greedy(), Beam(width=3), Sample()):
        for hyp in decoder.decode(model, 4, max_length=8, eos_id=EOS,
                                  rng=np.random.default_rng(seed)):
            assert hyp.score == pytest.approx(model.sequence_logp(hyp.ids, hyp.finished),
                                              abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_a_wide_beam_is_the_exhaustive_best(seed):
    """With width = V the beam keeps every prefix worth keeping: its answer is the best of all
    sequences of at most 4 ids, found by enumeration."""
    model = random_table(seed, V=3)
    best = max(
        (model.sequence_logp(list(ids), True), list(ids))
        for n in range(4) for ids in itertools.product((1, 2), repeat=n))
    hyp = Beam(width=3).decode(model, 1, max_length=4, eos_id=EOS)[0]
    if hyp.finished:
        assert hyp.score >= best[0] - 1e-12
    assert hyp.score == pytest.approx(model.sequence_logp(hyp.ids, hyp.finished), abs=1e-12)


def test_length_penalty_prefers_longer_outputs():
    """GNMT's lp: 'a' then the end (log 0.55 + log 0.7 = -0.955 over 2 ids) loses to the end
    alone (log 0.45 = -0.799) by total log-probability, and wins with alpha 2: -0.955 / (7/6)^2
    = -0.702."""
    p = np.array([[0.45, 0.55, 0.0],  # start: end, a, b
                  [0.5, 0.25, 0.25],  # unused
                  [0.7, 0.15, 0.15],  # after a
                  [0.5, 0.25, 0.25]])  # after b
    with np.errstate(divide="ignore"):
        model = Table(np.log(p))
    short = Beam(width=2).decode(model, 1, max_length=3, eos_id=EOS)[0]
    long = Beam(width=2, length_penalty=2.0).decode(model, 1, max_length=3, eos_id=EOS)[0]
    assert short.ids == [] and long.ids == [1]


def test_sample_uses_the_sampler_plugin():
    model = random_table(1)
    greedy_sampler = SAMPLERS.build({"name": "greedy"})
    sample = DECODERS.build({"name": "sample"}, sampler=greedy_sampler)
    assert sample.decode(model, 3, max_length=8, eos_id=EOS) == Greedy().decode(
        model, 3, max_length=8, eos_id=EOS)
    a = Sample().decode(model, 3, max_length=8, eos_id=EOS, rng=np.random.default_rng(9))
    b = Sample().decode(model, 3, max_length=8, eos_id=EOS, rng=np.random.default_rng(9))
    assert a == b


def test_beam_search_drives_the_language_model_and_the_seq2seq_decoder():
    lm = CharRNN("lstm", 6, 8, dtype="float64")
    lm.init_params(np.random.default_rng(0))
    for decoder in (Greedy(), Beam(width=4)):
        hyps = decoder.decode(lm, 2, start=[-1, 3, 4], max_length=10, eos_id=0)
        assert len(hyps) == 2 and all(0 < i < 6 for h in hyps for i in h.ids)
    assert Beam(width=1).decode(lm, 2, max_length=10, eos_id=0) == Greedy().decode(
        lm, 2, max_length=10, eos_id=0)
    model = Seq2Seq(5, 4, encoder_hidden=3, decoder_hidden=4, dtype="float64")
    model.init_params(np.random.default_rng(1))
    memory = model.encode(np.array([[1, 2], [3, -1]]), np.array([2, 1]))
    hyps = Beam(width=3).decode(model.stepper(memory), 2, max_length=5, eos_id=0)
    assert Beam(width=1).decode(model.stepper(memory), 2, max_length=5, eos_id=0) == \
        Greedy().decode(model.stepper(memory), 2, max_length=5, eos_id=0)
    for b, hyp in enumerate(hyps):  # the score, recomputed with decoder_step one row alone
        one = memory.take(np.array([b]))
        state, prev, total = None, -1, 0.0
        for i in [*hyp.ids, 0] if hyp.finished else hyp.ids:
            logits, state, weights = model.decoder_step(np.array([prev]), state, one)
            z = logits[0] - logits[0].max()
            total += z[i] - np.log(np.exp(z).sum())
            assert weights.shape == (2, 1) and weights[:, 0].sum() == pytest.approx(1.0)
            prev = i
        assert hyp.score == pytest.approx(total, abs=1e-10)


def test_bad_widths_and_lengths_are_one_line_errors():
    model = random_table(0, V=5)
    with pytest.raises(ConfigError, match=r"decoder 'beam': decoder.width must be >= 1"):
        DECODERS.build({"name": "beam", "width": 0})
    with pytest.raises(ConfigError, match=r"width=6 is larger than the 5 symbols"):
        Beam(width=6).decode(model, 1, max_length=4, eos_id=EOS)
    with pytest.raises(ConfigError, match="decoding length"):
        Greedy().decode(model, 1, max_length=0, eos_id=EOS)
