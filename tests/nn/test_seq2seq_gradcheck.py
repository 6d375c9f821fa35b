"""Finite-difference gradient checks of the seq2seq model: every registered attention with every
registered cell as encoder and as decoder (parametrised over the registries after
load_plugins(), so a new cell or attention is covered without editing this file), plus stacked,
unidirectional, embedded, dropout and padded variants.

As in tests/nn/test_cells_gradcheck.py, the analytic gradients are computed in float64 and the
numeric reference in extended precision (np.longdouble) with a fourth-order central difference,
at up to ENTRIES entries of every parameter array (all of the small ones; a fixed-seed choice of
the others), which keeps the 40 cases to a few seconds.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from framework.nn.models.seq2seq import Seq2Seq
from framework.plugins import load_plugins
from framework.registry import ATTENTIONS, CELLS
from tests.helpers import EPS, LD, TOL, rel_error

load_plugins()
V_SRC, V_TGT, H_ENC = 4, 5, 2
ENTRIES = 6


def numeric_entries(f, arr: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """d f / d arr at the flat indices ``picks`` (the stencil of tests.helpers.numeric_grad)."""
    flat = arr.reshape(-1)
    out = np.zeros(len(picks), dtype=LD)
    for j, k in enumerate(picks.tolist()):
        old = flat[k]
        vals = []
        for step in (2, 1, -1, -2):
            flat[k] = old + step * EPS
            vals.append(f())
        flat[k] = old
        out[j] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * EPS)
    return out


def batch(seed: int = 1) -> types.SimpleNamespace:
    """Two padded sources (lengths 3 and 1) and targets (lengths 3 and 1 with their end id)."""
    src = np.array([[1, 2], [3, -1], [0, -1]])
    targets_in = np.array([[-1, -1], [0, 2], [1, -1], [3, -1]])
    targets = np.array([[0, 2], [1, 4], [3, -1], [4, -1]])
    return types.SimpleNamespace(inputs=src, lengths=np.array([3, 1]), targets_in=targets_in,
                                 targets=targets)


def make(enc: str, dec: str, attention: dict, *, seed: int = 0, **options) -> Seq2Seq:
    options.setdefault("bidirectional", True)
    feature = H_ENC * (2 if options["bidirectional"] else 1)
    dec_h = feature if attention["name"] == "dot" and not attention.get("general") else 3
    model = Seq2Seq(V_SRC, V_TGT, encoder_cell=enc, encoder_hidden=H_ENC, decoder_cell=dec,
                    decoder_hidden=dec_h, attention=attention, dtype="float64", **options)
    rng = np.random.default_rng(seed)
    model.init_params(rng)
    for value in model.params.values():  # nonzero biases, less symmetric weights
        value += rng.normal(0.0, 0.3, value.shape)
    return model


def exact_loss(model: Seq2Seq, b, seed: int | None, mean: bool) -> LD:
    """The teacher-forced loss recomputed in the parameters' (extended) precision."""
    rng = None if seed is None else np.random.default_rng(seed)
    tgt, _, _, tops, _, _ = model._teacher_forced(b, rng)
    logits = model.head.logits(model.params, tops)
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    t = tgt.reshape(-1)
    rows = np.flatnonzero(t >= 0)
    loss = -logp[rows, t[rows]].sum()
    return loss / len(rows) if mean else loss


def check(model: Seq2Seq, *, seed: int | None = None, mean: bool = True) -> float:
    b = batch()
    rng = None if seed is None else np.random.default_rng(seed)
    _, count, grads = model.loss_and_grads(b, reduction="mean" if mean else "sum",
                                           dropout_rng=rng)
    assert count == int((b.targets >= 0).sum())
    assert set(grads) == set(model.params)
    analytic = {k: np.array(v) for k, v in grads.items()}
    model.params = {k: v.astype(LD) for k, v in model.params.items()}  # the numeric twin
    worst = 0.0
    choose = np.random.default_rng(5)
    for key, value in model.params.items():
        picks = np.arange(value.size)
        if value.size > ENTRIES:
            picks = np.sort(choose.choice(value.size, ENTRIES, replace=False))
        num = numeric_entries(lambda: exact_loss(model, b, seed, mean), value, picks)
        err = rel_error(analytic[key].reshape(-1)[picks], num)
        assert err < TOL, f"{key}: relative error {err:.2e}"
        worst = max(worst, err)
    return worst


ATTENTION_CASES = [{"name": n} for n in ATTENTIONS.names()] + [{"name": "dot", "general": True}]


@pytest.mark.parametrize("attention", ATTENTION_CASES,
                         ids=[",".join(f"{v}" for v in a.values()) for a in ATTENTION_CASES])
@pytest.mark.parametrize("dec", CELLS.names())
@pytest.mark.parametrize("enc", CELLS.names())
def test_every_attention_with_every_cell(enc: str, dec: str, attention: dict) -> None:
    check(make(enc, dec, attention))


@pytest.mark.parametrize("options", [
    {"bidirectional": False, "encoder_layers": 2, "decoder_layers": 2},
    {"embed_size": 3, "mean": False},
    {"encoder_layers": 2, "decoder_layers": 2, "dropout": 0.3, "seed": 7},
], ids=["stacked-unidirectional", "embedding-sum", "dropout"])
def test_variants(options: dict) -> None:
    options = dict(options)
    mean = options.pop("mean", True)
    seed = options.pop("seed", None)
    check(make("lstm", "gru", {"name": "additive", "units": 3}, **options), seed=seed, mean=mean)


def test_padding_sends_no_gradient() -> None:
    """What the padded source steps hold and what the padded target steps read change nothing."""
    model = make("gru", "lstm", {"name": "additive"})
    b = batch()
    loss, _, grads = model.loss_and_grads(b)
    other = batch()
    other.inputs = np.where(other.inputs < 0, 3, other.inputs)  # padding replaced by real ids
    other.targets_in = np.where(b.targets < 0, 2, other.targets_in)
    loss2, _, grads2 = model.loss_and_grads(other)
    assert loss == loss2
    for key in grads:
        np.testing.assert_array_equal(grads[key], grads2[key])
