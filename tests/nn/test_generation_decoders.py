"""Every decoder through text generation: a windowed model (each prediction from the zero state
over the last W ids) decodes with greedy and beam, beam search keeps its hypotheses' windows
apart, and beam's n-best outputs are distinct, best first, with scores summed from the model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from framework.data.vocab import Vocab
from framework.nn.decoding import build_decoder, log_softmax
from framework.nn.generation import WindowedModel, generate_scored
from framework.nn.models.language_model import CharRNN

VOCAB = Vocab.from_text("abc", eos="\n")  # "\n" = 0


def small_model(seed: int = 0) -> CharRNN:
    model = CharRNN("gru", VOCAB.size, 5)
    model.init_params(np.random.default_rng(seed))
    model.params = {k: v * 3 for k, v in model.params.items()}  # peakier distributions
    return model


def windowed_logp(model: CharRNN, window: int, context: list[int], ids: list[int]) -> float:
    """log p(ids | context), each step run from the zero state over the last ``window`` ids."""
    total, seen = 0.0, [-1] * window + context
    for i in ids:
        state, logits = model.zero_state(1), None
        for j in seen[-window:]:
            logits, state = model.step(np.array([j]), state)
        total += float(log_softmax(logits)[0, i])
        seen.append(i)
    return total


@pytest.mark.parametrize("window", [2, 4])
def test_windowed_greedy_and_beam_scores_are_the_windowed_models(window):
    model = small_model()
    greedy = generate_scored(model, VOCAB, build_decoder("greedy"), prompt="ab", length=8,
                             window=window)
    one = generate_scored(model, VOCAB, build_decoder({"name": "beam", "width": 1}),
                          prompt="ab", length=8, window=window)
    assert greedy == one
    beams = generate_scored(model, VOCAB, build_decoder({"name": "beam", "width": 3}),
                            prompt="ab", length=8, num_samples=3, window=window)
    assert len({b.text for b in beams}) == len(beams) == 3
    for out in [*greedy, *beams]:
        ids = [VOCAB.stoi[c] for c in out.text[2:]] + ([0] if out.finished else [])
        context = [-1, VOCAB.stoi["a"], VOCAB.stoi["b"]]
        assert out.score == pytest.approx(windowed_logp(model, window, context, ids), abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_a_wide_beam_over_a_windowed_model_is_the_exhaustive_best(seed):
    # Two ids at most: a beam of 3 keeps every unfinished prefix (3 non-end ids), so it is an
    # exhaustive search.
    model, window, length = small_model(seed), 2, 2
    context = [-1, VOCAB.stoi["c"]]
    best = generate_scored(model, VOCAB, build_decoder({"name": "beam", "width": 3}),
                           prompt="c", length=length, window=window)[0]
    # Every sequence of at most `length` ids: ended by the eos, or cut at `length`.
    candidates = []
    for n in range(length + 1):
        for ids in itertools.product(range(1, VOCAB.size), repeat=n):
            ended = [*ids, 0] if n < length else list(ids)
            candidates.append(windowed_logp(model, window, context, ended))
    assert best.score == pytest.approx(max(candidates), abs=1e-9)


def test_windowed_model_state_is_the_window_of_each_row():
    model = WindowedModel(small_model(), 3)
    logits, state = model.prime(2, [-1, 1])
    assert state.shape == (3, 2) and state[:, 0].tolist() == [-1, -1, 1]
    _, state = model.step(np.array([2, 3]), state)
    assert state.T.tolist() == [[-1, 1, 2], [-1, 1, 3]]
    assert model.select_state(state, np.array([1, 1, 0])).T.tolist() == [
        [-1, 1, 3], [-1, 1, 3], [-1, 1, 2]]
