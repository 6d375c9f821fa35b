"""Beam search against greedy decoding on a trained checkpoint's held-out examples.

    python -m framework.studies.beam_vs_greedy CHECKPOINT [--width 5] [--prefix 0 1 3] [--markdown]

A language model of a names dataset (``dataset=dinos``): each held-out name's first ``prefix``
characters are the prompt (0: no prompt, one output for all), and the greedy and the beam
outputs are compared by their mean total log-probability under the model (of the generated
characters and the end of the name, the prompt given), by how often the output is the held-out
name itself ("exact match") and by how often it is a name of the training set.  The
held-out name's own log-probability is shown for scale.

A seq2seq model (``experiment=dates``): every held-out source is translated greedily and with
the beam, and the exact match (the whole target right) and the mean log-probability of the
outputs are compared, with the decoding time.

The dataset is rebuilt from the checkpoint's saved config (same held-out split).  One BLAS
thread; deterministic (greedy and beam draw nothing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np

from framework.cli.console import ArgumentParser, int_at_least


def _load(path: str) -> tuple[Any, Any, Any, Any]:
    """(model, vocab, meta, corpus) of a checkpoint, the corpus rebuilt from its config."""
    from framework.errors import DataError
    from framework.registry import DATASETS
    from framework.training.checkpoint import load_model, resolve_checkpoint

    model, vocab, meta = load_model(resolve_checkpoint(path))
    node = (meta.config or {}).get("dataset")
    if not isinstance(node, dict):
        raise DataError(f"{path} has no saved dataset config to rebuild its held-out set from")
    return model, vocab, meta, DATASETS.build(node).load()


def names_rows(model: Any, vocab: Any, corpus: Any, width: int,
               prefixes: list[int]) -> list[dict[str, Any]]:
    """One row per (prefix, decoder) on the held-out names of a lines corpus."""
    from framework.nn.decoding import build_decoder, log_softmax
    from framework.nn.generation import generate_scored

    held_out = [vocab.decode(ids) for ids in corpus.val]
    training = {vocab.decode(ids) for ids in corpus.train}
    decoders = {"greedy": build_decoder("greedy"),
                f"beam {width}": build_decoder({"name": "beam", "width": width},
                                               vocab_size=vocab.size)}

    def own_logp(name: str, k: int) -> float:
        state, logits = model.zero_state(1), None
        for i in [-1, *vocab.encode(name[:k]).tolist()]:
            logits, state = model.step(np.array([i]), state)
        total = 0.0
        for i in [*vocab.encode(name[k:]).tolist(), vocab.eos_id]:
            total += float(log_softmax(logits)[0, i])
            logits, state = model.step(np.array([i]), state)
        return total

    rows = []
    for k in prefixes:
        names = [n for n in held_out if len(n) > k]
        reference = statistics.fmean(own_logp(n, k) for n in names)
        for label, decoder in decoders.items():
            start = time.perf_counter()
            cache: dict[str, Any] = {}  # one decode per distinct prompt
            outs = []
            for name in names:
                prompt = name[:k]
                if prompt not in cache:
                    cache[prompt] = generate_scored(model, vocab, decoder, prompt=prompt,
                                                    length=100)[0]
                outs.append(cache[prompt])
            rows.append({
                "prefix": k, "decoder": label, "names": len(names), "prompts": len(cache),
                "logp": statistics.fmean(o.score for o in outs),
                "reference_logp": reference,
                "exact": sum(o.text == n for o, n in zip(outs, names, strict=True)) / len(names),
                "in_training": sum(o.text in training for o in outs) / len(outs),
                "length": statistics.fmean(len(o.text) for o in outs),
                "seconds": time.perf_counter() - start,
            })
    return rows


def translation_rows(model: Any, meta: Any, corpus: Any, width: int) -> list[dict[str, Any]]:
    """Greedy and beam on every held-out pair of a parallel corpus."""
    from framework.nn.decoding import build_decoder
    from framework.tasks.translation import translate

    task_meta = meta.model.task_meta
    tgt = corpus.tgt_vocab
    sources = [s for s, _ in corpus.val]
    targets = [t.tolist() for _, t in corpus.val]
    rows = []
    for label, node in (("greedy", "greedy"), (f"beam {width}", {"name": "beam", "width": width})):
        decoder = build_decoder(node, vocab_size=tgt.size)
        start = time.perf_counter()
        hyps = translate(model, sources, decoder,
                         max_length=int(task_meta["max_target_length"]) + 1, eos_id=tgt.eos_id)
        seconds = time.perf_counter() - start
        rows.append({"decoder": label, "pairs": len(sources),
                     "exact": sum(h.ids == t for h, t in zip(hyps, targets, strict=True))
                     / len(sources),
                     "logp": statistics.fmean(h.score for h in hyps),
                     "seconds": seconds})
    return rows


def _table(head: list[str], lines: list[list[str]], markdown: bool) -> str:
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*line) for line in lines])


def format_names(rows: list[dict[str, Any]], markdown: bool) -> str:
    head = ["prompt", "decoder", "names", "mean log p", "held-out name's log p", "exact match",
            "a training name", "mean length", "seconds"]
    return _table(head, [[f"first {r['prefix']}" if r["prefix"] else "none", r["decoder"],
                          str(r["names"]), f"{r['logp']:.3f}", f"{r['reference_logp']:.3f}",
                          f"{r['exact']:.3f}", f"{r['in_training']:.3f}", f"{r['length']:.1f}",
                          f"{r['seconds']:.1f}"] for r in rows], markdown)


def format_translations(rows: list[dict[str, Any]], markdown: bool) -> str:
    head = ["decoder", "held-out pairs", "exact match", "mean log p", "seconds"]
    return _table(head, [[r["decoder"], str(r["pairs"]), f"{r['exact']:.4f}", f"{r['logp']:.4f}",
                          f"{r['seconds']:.1f}"] for r in rows], markdown)


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    from framework.cli.console import run_command

    parser = ArgumentParser(prog="python -m framework.studies.beam_vs_greedy",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .npz checkpoint or a run directory")
    parser.add_argument("--width", type=int_at_least(1), default=5, help="beam width (5)")
    parser.add_argument("--prefix", type=int_at_least(0), nargs="+", default=[0, 1, 3],
                        help="names: prompt lengths, in characters of each held-out name")
    parser.add_argument("--markdown", action="store_true", help="markdown tables")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def body() -> None:
        with threadpool_limits(1):
            model, vocab, meta, corpus = _load(args.checkpoint)
            if getattr(corpus, "kind", None) == "parallel":
                print(format_translations(translation_rows(model, meta, corpus, args.width),
                                          args.markdown))
            elif getattr(corpus, "kind", None) == "lines":
                print(format_names(names_rows(model, vocab, corpus, args.width, args.prefix),
                                   args.markdown))
            else:
                from framework.errors import DataError

                raise DataError("this study compares decoders on names (a lines corpus) or on "
                                "a parallel corpus; this checkpoint's dataset is neither")

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
