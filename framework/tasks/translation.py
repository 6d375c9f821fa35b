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
DECODE_FIX = "pass fewer or shorter texts, or a smaller decoder.width"


def encode_texts(vocab: Any, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
    """Source ids of every text.  An empty text, one longer than ``max_length`` (the longest
    source the model was trained on), or one with characters the training sources never held
    is a one-line DataError naming the text (and the characters), as the language model refuses
    a prompt outside its vocabulary: a translation of a guessed source is not an answer."""
    from framework.data.corpora.parallel import UNKNOWN, encode_source
    from framework.nn.generation import unknown_symbols_message

    out = []
    for n, text in enumerate(texts, start=1):
        if not text:
            raise DataError(f"text {n} is empty; give a source text of 1 to {max_length} "
                            f"characters")
        if len(text) > max_length:
            raise DataError(f"text {n} has {len(text)} characters, more than the {max_length} "
                            f"of the longest source this model was trained on; shorten it")
        ids, unseen = encode_source(vocab, text)
        if unseen:
            known = "".join(c for c in vocab.chars if c != UNKNOWN)
            raise DataError(unknown_symbols_message(vocab, unseen, f"text {n}", known))
        out.append(ids)
    return out


def build_decoder(node: Mapping[str, Any] | None, target_size: int) -> Any:
    """A DECODERS plugin from a config node (None: greedy), checked against the target
    vocabulary (:func:`framework.nn.decoding.build_decoder`)."""
    from framework.nn.decoding import build_decoder as build

    return build(node if node is not None else "greedy", vocab_size=target_size)


def served_decoder_node(row: Mapping[str, Any]) -> dict[str, Any]:
    """The decoder node of a served request's row (empty ``decoder`` cell: greedy)."""
    from framework.tasks import requests

    return requests.decoder_node(dict(row), "greedy")


def step_values(stacks: Any) -> int:
    """Values one example's step caches in ``stacks``: every layer's gates, states and
    output."""
    return sum(st.num_layers * (st.cell.gates + st.cell.state_size + 1) * st.cell.hidden_size
               for st in stacks)


def attention_units(attention: Any) -> int:
    """Values per source position an attention keeps at each decoder step (the additive
    tanh layer's width; 0 for the others)."""
    return int(getattr(getattr(attention, "cfg", None), "units", 0) or 0)


def decoding_bytes(model: Any, rows: int, source_length: int, width: int,
                   max_length: int) -> int:
    """Bytes decoding ``rows`` sources of up to ``source_length`` characters holds at once,
    ``width`` hypotheses a source (a beam's; 1 for greedy and sampling), for up to
    ``max_length`` steps: the encoder's outputs; per hypothesis a copy of them with the
    attention's keys, the decoder's states, the logits and their log-probabilities, and the
    output so far."""
    itemsize = np.dtype(model.dtype).itemsize
    feature = model.encoder.feature_size
    decoder = model.decoder
    per_hypothesis = (source_length * (feature + attention_units(model.attention))
                      + decoder.num_layers * decoder.cell.state_size * decoder.cell.hidden_size
                      + 3 * model.tgt_vocab_size)
    return (itemsize * (rows * source_length * feature + rows * width * per_hypothesis)
            + 8 * rows * width * max_length)


def translate(model: Any, sources: Sequence[np.ndarray], decoder: Any, *, max_length: int,
              eos_id: int, batch_size: int = DECODE_BATCH,
              rng: np.random.Generator | None = None, fix: str = DECODE_FIX) -> list[Any]:
    """One :class:`~framework.nn.decoding.Hypothesis` per source (ids without the end id),
    decoded ``batch_size`` sources at a time; the memory of each batch is checked before it is
    spent (``fix``: what to lower when it does not fit)."""
    from framework.data.feeds.labelled import pad_texts
    from framework.memory import check_buffers, gib, shortfall

    width = int(getattr(getattr(decoder, "cfg", None), "width", 1) or 1)  # a beam's
    longest_all = max((len(s) for s in sources), default=0)
    # Fewer sources at a time where a whole batch would not fit (the outputs are the same).
    while batch_size > 1 and shortfall(decoding_bytes(model, batch_size, longest_all, width,
                                                      max_length)) is not None:
        batch_size //= 2
    hyps: list[Any] = []
    for start in range(0, len(sources), batch_size):
        chunk = list(sources[start : start + batch_size])
        longest = max((len(s) for s in chunk), default=0)
        need = decoding_bytes(model, len(chunk), longest, width, max_length)
        check_buffers(f"decoding {len(chunk):,} source texts", need,
                      f"{len(chunk):,} x {width} hypotheses over sources of up to {longest} "
                      f"characters, up to {max_length:,} output steps; {gib(need)} in all",
                      fix)
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


__all__ = ["DECODE_BATCH", "DECODE_FIX", "attention_units", "build_decoder", "decoding_bytes",
           "encode_texts", "greedy_attention", "save_attention_png", "served_decoder_node",
           "step_values", "translate"]
