"""Beam search against greedy decoding for a trained seq2seq checkpoint, on its own held-out pairs.

``python -m framework.studies.seq2seq_beam <checkpoint> [width ...]`` rebuilds the dataset the
checkpoint was trained on from its saved config (the held-out split included), decodes every
held-out source greedily and with a beam of each width (default 5), and prints per strategy the
exact-match rate, the mean total log-probability of the outputs under the model and the wall
time (one BLAS thread).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from threadpoolctl import threadpool_limits

from framework.registry import DATASETS
from framework.tasks.seq2seq import target_vocab
from framework.tasks.translation import build_decoder, translate
from framework.training.checkpoint import load_model, resolve_checkpoint


def compare(checkpoint: str, widths: list[int]) -> list[dict[str, Any]]:
    """One row per strategy: name, exact match, mean log-probability, seconds."""
    model, vocab, meta = load_model(resolve_checkpoint(checkpoint))
    task_meta = meta.model.task_meta
    corpus = DATASETS.build(meta.config["dataset"]).load()
    tgt = target_vocab(task_meta)
    if tgt.chars != corpus.tgt_vocab.chars or vocab.chars != corpus.src_vocab.chars:
        raise SystemExit("the dataset rebuilt from the checkpoint's config has other "
                         "vocabularies than the checkpoint; cannot compare on it")
    sources = [s for s, _ in corpus.val]
    want = [t.tolist() for _, t in corpus.val]
    rows = []
    for node in [None, *({"name": "beam", "width": w} for w in widths)]:
        start = time.perf_counter()
        hyps = translate(model, sources, build_decoder(node, tgt.size),
                         max_length=int(task_meta["max_target_length"]) + 1, eos_id=tgt.eos_id)
        seconds = time.perf_counter() - start
        rows.append({"decoder": "greedy" if node is None else f"beam {node['width']}",
                     "exact_match": sum(h.ids == w for h, w in zip(hyps, want, strict=True))
                     / len(want),
                     "mean_log_prob": sum(h.score for h in hyps) / len(hyps),
                     "seconds": seconds})
    return rows


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m framework.studies.seq2seq_beam <checkpoint> "
                         "[width ...]")
    widths = [int(w) for w in argv[1:]] or [5]
    with threadpool_limits(1):
        rows = compare(argv[0], widths)
    print("| decoder | exact match | mean log-probability | time |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['decoder']} | {r['exact_match']:.4f} | {r['mean_log_prob']:.4f} | "
              f"{r['seconds']:.1f} s |")


if __name__ == "__main__":
    main(sys.argv[1:])
