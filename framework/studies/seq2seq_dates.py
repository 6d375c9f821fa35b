"""Proof that the seq2seq pieces learn: a bi-LSTM, additive attention and an LSTM on dates.

``python -m framework.studies.seq2seq_dates [steps] [n_train] [attention]`` trains
:class:`~framework.nn.models.seq2seq.Seq2Seq` with a short loop of its own (the ``parallel``
feed, global-norm clipping, Adam; one BLAS thread) on ``n_train`` generated dates, then decodes
the held-out dates greedily and with a beam of 5, and prints the exact-match rate (the whole ISO
date right) and the wall time.  It needs the ``dates`` extra (Faker, Babel).  The ``seq2seq``
task trains the same model through the trainer (``experiment=dates``); this loop checks the
model on its own, without the trainer.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from framework.data.corpora.parallel import ParallelCorpus
from framework.nn.models.seq2seq import Seq2Seq
from framework.registry import CLIPS, DATASETS, DECODERS, FEEDS, OPTIMIZERS
from framework.tasks.translation import translate


def exact_match(model: Seq2Seq, corpus: ParallelCorpus, decoder: Any) -> float:
    """Share of the validation pairs whose decoded target equals the reference."""
    vocab = corpus.tgt_vocab
    hyps = translate(model, [s for s, _ in corpus.val], decoder,
                     max_length=corpus.max_target_length + 1, eos_id=vocab.eos_id)
    return sum(h.ids == t.tolist() for h, (_, t) in zip(hyps, corpus.val, strict=True)) / len(hyps)


def train(steps: int = 1500, n_train: int = 4000, n_val: int = 1000, attention: str = "additive",
          *, batch_size: int = 64, lr: float = 0.005, seed: int = 0,
          log_every: int = 250) -> dict[str, float]:
    """Train and evaluate; returns the exact-match rates, the final train loss and the times."""
    corpus = DATASETS.build({"name": "dates", "n_train": n_train, "n_val": n_val}).load()
    model = Seq2Seq(corpus.src_vocab.size, corpus.tgt_vocab.size, encoder_cell="lstm",
                    encoder_hidden=32, bidirectional=True, decoder_cell="lstm",
                    decoder_hidden=64, attention=attention)
    model.init_params(np.random.default_rng(seed))
    feed = FEEDS.build({"name": "parallel"}, corpus=corpus, batch_size=batch_size, seed=seed)
    optimizer = OPTIMIZERS.build({"name": "adam", "lr": lr})
    clip = CLIPS.build({"name": "norm", "max_norm": 5.0})
    start = time.perf_counter()
    smooth = None
    for step in range(steps):
        loss_sum, count, grads = model.loss_and_grads(feed.batch(step))
        clip(grads)
        optimizer.step(model.params, grads)
        loss = loss_sum / count
        smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}: smoothed loss {smooth:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    train_time = time.perf_counter() - start
    greedy = exact_match(model, corpus, DECODERS.build({"name": "greedy"}))
    start = time.perf_counter()
    beam = exact_match(model, corpus, DECODERS.build({"name": "beam", "width": 5}))
    return {"train_seconds": train_time, "smoothed_loss": float(smooth),
            "exact_match_greedy": greedy, "exact_match_beam5": beam,
            "beam_seconds": time.perf_counter() - start}


def main(argv: list[str]) -> None:
    steps = int(argv[0]) if argv else 1500
    n_train = int(argv[1]) if len(argv) > 1 else 4000
    attention = argv[2] if len(argv) > 2 else "additive"
    with threadpool_limits(1):
        result = train(steps, n_train, attention=attention)
    print(f"{attention}: {steps} steps on {n_train} dates in {result['train_seconds']:.0f} s; "
          f"held-out exact match {result['exact_match_greedy']:.4f} greedy, "
          f"{result['exact_match_beam5']:.4f} beam 5")


if __name__ == "__main__":
    main(sys.argv[1:])
