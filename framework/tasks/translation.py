"""Translating texts with a trained Seq2Seq: source checks, batched decoding, attention maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import DataError

# Sources encoded and decoded together: large enough that the per-step Python work is spread
# over many rows, small enough that a beam's (rows x width) states stay a few MB.
DECODE_BATCH = 500


def encode_texts(vocab: Any, texts: Sequence[str],
                 max_length: int) -> tuple[list[np.ndarray], list[str]]:
    """Source ids of every text and the characters the source vocabulary never saw (mapped to
    its unknown symbol; sorted, once each).  An empty text, or one longer than ``max_length``
    (the longest source the model was trained on), is a one-line DataError naming it."""
    from framework.data.corpora.parallel import encode_source

    out, unknown = [], set()
    for n, text in enumerate(texts, start=1):
        if not text:
            raise DataError(f"text {n} is empty; give a source text of 1 to {max_length} "
                            f"characters")
        if len(text) > max_length:
            raise DataError(f"text {n} has {len(text)} characters, more than the {max_length} "
                            f"of the longest source this model was trained on; shorten it")
        ids, unseen = encode_source(vocab, text)
        out.append(ids)
        unknown.update(unseen)
    return out, sorted(unknown)


def unknown_warning(unknown: Sequence[str]) -> str:
    """The one-line warning for characters the source vocabulary never saw."""
    shown = ", ".join(repr(c) for c in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
    return (f"warning: {len(unknown)} character(s) the model never saw in training ({shown}) "
            f"read as the unknown symbol; the translation may be wrong")


def build_decoder(node: Mapping[str, Any] | None, target_size: int) -> Any:
    """A DECODERS plugin from a config node (None: greedy), checked against the target
    vocabulary (:func:`framework.nn.decoding.build_decoder`)."""
    from framework.nn.decoding import build_decoder as build

    return build(node if node is not None else "greedy", vocab_size=target_size)


def served_decoder_node(row: Mapping[str, Any]) -> dict[str, Any]:
    """The decoder node of a served request's row (empty ``decoder`` cell: greedy)."""
    from framework.tasks import requests

    return requests.decoder_node(dict(row), "greedy")


def translate(model: Any, sources: Sequence[np.ndarray], decoder: Any, *, max_length: int,
              eos_id: int, batch_size: int = DECODE_BATCH,
              rng: np.random.Generator | None = None) -> list[Any]:
    """One :class:`~framework.nn.decoding.Hypothesis` per source (ids without the end id),
    decoded ``batch_size`` sources at a time."""
    from framework.data.feeds.labelled import pad_texts

    hyps: list[Any] = []
    for start in range(0, len(sources), batch_size):
        chunk = list(sources[start : start + batch_size])
        inputs, lengths = pad_texts(chunk)
        memory = model.encode(inputs, lengths)
        hyps += decoder.decode(model.stepper(memory), len(chunk), max_length=max_length,
                               eos_id=eos_id, rng=rng)
    return hyps


def greedy_attention(model: Any, source: np.ndarray, *, max_length: int,
                     eos_id: int) -> tuple[list[int], np.ndarray]:
    """The greedy output ids of one source (the end id included when reached) and the
    attention weights of each output step over the source positions, (steps, S)."""
    memory = model.encode(np.asarray(source, dtype=np.int64)[:, None],
                          np.array([len(source)], dtype=np.int64))
    stepper = model.stepper(memory)
    state = stepper.zero_state(1)
    prev = np.array([-1], dtype=np.int64)
    ids, rows = [], []
    for _ in range(max_length):
        logits, state = stepper.step(prev, state)
        rows.append(stepper.last_weights[:, 0].astype(np.float64))
        token = int(np.argmax(logits[0]))
        ids.append(token)
        if token == eos_id:
            break
        prev = np.array([token], dtype=np.int64)
    return ids, np.stack(rows)


def save_attention_png(weights: np.ndarray, source: str, output: Sequence[str],
                       path: Path, title: str) -> Path:
    """A heat map of ``weights`` (output steps x source characters) as a PNG."""
    from framework.figures import agg_figure, save_figure

    steps, width = weights.shape
    fig = agg_figure(max(3.0, 0.3 * width + 1.5), max(2.5, 0.3 * steps + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(width), [c if c != " " else "␣" for c in source])
    ax.set_yticks(range(steps), [c if c != "\n" else "<end>" for c in output])
    ax.set_xlabel("source character")
    ax.set_ylabel("output character")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = ["DECODE_BATCH", "build_decoder", "encode_texts", "greedy_attention",
           "save_attention_png", "served_decoder_node", "translate", "unknown_warning"]
