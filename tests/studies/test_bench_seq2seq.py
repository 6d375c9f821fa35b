"""The dates model's benchmark row: the PyTorch reference is the same model as rnnlab's (same
loss from the same parameters on the same batch), both loops train, and the row prints (no
timing assertions: performance claims come from `python -m framework.bench`)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faker")  # the dates dataset (the `dates` extra)
pytest.importorskip("babel")

from framework.studies.bench_seq2seq import (  # noqa: E402
    make_dates_trainer,
    seq2seq_section,
    torch_loop_for,
)

SMALL = ["dataset.n_train=200", "dataset.n_val=20", "train.batch_size=16"]


def lstm_to_torch(W_x: np.ndarray, W_h: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """rnnlab's LSTM weights (D, 4H), gate blocks in GATE_ORDER, as torch's (4H, D) in i, f, g,
    o order; torch's second bias is zero."""
    from cells.lstm import GATE_ORDER

    H = W_h.shape[0]
    blocks = [GATE_ORDER.index(g) for g in "ifgo"]
    cols = np.concatenate([np.arange(k * H, (k + 1) * H) for k in blocks])
    return W_x[:, cols].T, W_h[:, cols].T, b[cols], np.zeros_like(b)


def test_the_torch_reference_is_the_same_model():
    torch = pytest.importorskip("torch")
    trainer = make_dates_trainer(SMALL)
    model, p = trainer.model, trainer.model.params
    ref = torch_loop_for(trainer)
    with torch.no_grad():
        for name, rnn_suffix in (("enc.fwd.layers.0.", ""), ("enc.bwd.layers.0.", "_reverse")):
            wi, wh, bi, bh = lstm_to_torch(p[name + "W_x"], p[name + "W_h"], p[name + "b"])
            for attr, value in (("weight_ih_l0", wi), ("weight_hh_l0", wh), ("bias_ih_l0", bi),
                                ("bias_hh_l0", bh)):
                getattr(ref.encoder, attr + rnn_suffix).copy_(torch.from_numpy(value))
        wi, wh, bi, bh = lstm_to_torch(p["dec.layers.0.W_x"], p["dec.layers.0.W_h"],
                                       p["dec.layers.0.b"])
        for attr, value in (("weight_ih", wi), ("weight_hh", wh), ("bias_ih", bi),
                            ("bias_hh", bh)):
            getattr(ref.decoder, attr).copy_(torch.from_numpy(value))
        for module, weight, bias in ((ref.bridge, "bridge.W", "bridge.b"),
                                     (ref.W_q, "attn.W_q", "attn.b"),
                                     (ref.out, "out.W", "out.b")):
            module.weight.copy_(torch.from_numpy(p[weight].T))
            module.bias.copy_(torch.from_numpy(p[bias]))
        ref.W_k.weight.copy_(torch.from_numpy(p["attn.W_k"].T))
        ref.v.weight.copy_(torch.from_numpy(p["attn.v"][None]))
        batch = trainer.feed.batch(0)
        assert len(set(batch.lengths.tolist())) > 1  # padded sources
        loss_sum, count, _ = model.loss(batch)
        assert float(ref.loss(batch)) == pytest.approx(loss_sum / count, rel=1e-5)


def test_both_loops_train_and_the_row_prints():
    trainer = make_dates_trainer(SMALL)
    before = {k: v.copy() for k, v in trainer.model.params.items()}
    trainer.train_step()
    assert all(not np.array_equal(before[k], v) for k, v in trainer.model.params.items())
    out = seq2seq_section(True, 1, 0.01, False, True, 1, lambda _: None)
    title, head, rule, row = out.splitlines()
    assert title.startswith("training pairs/s, dates model") and "threads 1" in title
    assert head.startswith("| encoder |") and row.startswith("| bi-lstm 32 | additive 10 |")
    assert row.endswith("| - | - |")  # no PyTorch column without torch


def test_the_torch_loop_steps():
    torch = pytest.importorskip("torch")
    ref = torch_loop_for(make_dates_trainer(SMALL))
    weights = [w.detach().clone() for w in ref.params]
    assert ref.step() == 16
    assert all(not torch.equal(w, p) for w, p in zip(weights, ref.params, strict=True))
