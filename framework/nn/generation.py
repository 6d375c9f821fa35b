"""Text generation from a trained language model with any decoding plugin or sampler.

Characters throughout, or tokens for a token vocabulary: then a prompt is whitespace-separated
tokens and each returned text is its tokens joined by single spaces.

Two corpus kinds, told apart by the vocabulary's ``eos``:

* lines (names, eos "\\n"): like the course's ``sample``, start from the zero state with the zero
  input (id -1), feed the prompt, then sample until the eos character or ``length`` characters.
  The returned text is the prompt plus the sampled characters, without the eos.
* stream (eos None): feed the prompt (an empty prompt starts from "\\n" if the vocabulary has it,
  else from its first character, like min-char-rnn's seed character, which is not returned), then
  sample exactly ``length`` characters. The output starts with the raw prompt.

``window=W`` re-creates models trained on fixed windows (the course's Shakespeare model): each next
character is predicted by running the model from the zero state over only the last W characters.
While the text is shorter than W it is left-padded with zero inputs (id -1) up to W, as the
course pads the prompt with '0' characters that become all-zero input rows.

The model only needs ``zero_state(B)`` and ``step(ids (B,), state) -> (logits (B, V), state)``.
The ids are chosen by a :mod:`framework.nn.decoding` plugin (:func:`generate_scored`: greedy,
sample, beam), which also gives each output's total log-probability under the model (of the
generated part, the prompt given); :func:`generate` is the sampling form with a sampler plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.decoding import MAX_LENGTH, Decoder, Sample, StepModel

# Bounds of one generate() call. The work is num_samples x (prompt + length) model steps (times
# the window with ``window``); these keep a typo (length=10000000) from running for hours.
MAX_SAMPLES = 10_000
MAX_PROMPT = 100_000


class Generated(NamedTuple):
    text: str  # the prompt and the generated symbols (without the end-of-line symbol)
    score: float  # total log-probability of the generated ids (and of the eos when finished)
    finished: bool  # the output ended with the eos (else it reached ``length``)


class WindowedModel:
    """A step model that predicts each next id from the zero state over only the last ``window``
    ids fed (left-padded with zero inputs, id -1, while fewer were fed): the state is that
    window, (W, B) ids.  ``prime`` feeds the start ids and runs the window once."""

    def __init__(self, model: StepModel, window: int) -> None:
        self.model, self.window = model, int(window)

    def zero_state(self, batch: int) -> np.ndarray:
        return np.full((self.window, batch), -1, dtype=np.int64)

    def _run(self, history: np.ndarray) -> np.ndarray:
        logits, _ = _run(self.model, history, self.model.zero_state(history.shape[1]))
        return logits

    def prime(self, batch: int, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        column = np.asarray(list(ids), dtype=np.int64)[:, None]
        history = np.concatenate([self.zero_state(batch), np.repeat(column, batch, axis=1)])
        history = history[-self.window:]
        return self._run(history), history

    def step(self, ids: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        history = np.concatenate([state, np.asarray(ids, dtype=np.int64)[None]])[-self.window:]
        return self._run(history), history

    def select_state(self, state: np.ndarray, index: np.ndarray) -> np.ndarray:
        return state[:, index]


def unknown_symbols_message(vocab: Any, unknown: list[str], what: str = "prompt",
                            shown_vocab: str | None = None) -> str:
    """The one line for ``what`` holding symbols outside ``vocab`` (``unknown``, sorted): they,
    a lower-case hint when it fits, and the symbols the model does read (``shown_vocab``:
    the vocabulary as listed, by default all of it)."""
    shown = ", ".join(repr(c) for c in unknown[:20]) + (", ..." if len(unknown) > 20 else "")
    hint = ""
    if any(c.isupper() for c in unknown) and all(
        c.lower() in vocab.stoi for c in unknown if c.isupper()
    ):
        hint = f" (this vocabulary is lower-case; lower-case the {what.split()[0]})"
    if getattr(vocab, "is_chars", True):
        listed = "".join(vocab.chars) if shown_vocab is None else shown_vocab
        return (f"{what} has characters that are not in the vocabulary: {shown}{hint}; "
                f"the vocabulary is {listed!r}")
    listed = " ".join(vocab.chars[:40]) + (" ..." if vocab.size > 40 else "")
    return (f"{what} has tokens that are not in the vocabulary: {shown}; separate tokens by "
            f"spaces and use only the model's tokens: {listed}")


def encode_prompt(vocab: Any, prompt: str) -> list[int]:
    """Prompt symbols as ids (characters, or whitespace-separated tokens of a token vocabulary);
    unknown ones raise a DataError that names them."""
    symbols = vocab.split(prompt) if hasattr(vocab, "split") else list(prompt)
    unknown = sorted({c for c in symbols if c not in vocab.stoi})
    if unknown:
        raise DataError(unknown_symbols_message(vocab, unknown))
    return [vocab.stoi[c] for c in symbols]


def start_ids(vocab: Any, corpus_kind: str | None, feed: str | None) -> list[int] | None:
    """What to feed before the prompt when it is not the default (None).

    A token corpus of examples (music) trained as one stream sees every example start right
    after the previous one's end token, never after the zero input: its samples start after
    the end token too.  Character datasets keep the default, so their samples do not change.
    """
    if (not getattr(vocab, "is_chars", True) and corpus_kind == "lines" and feed == "stream"
            and vocab.eos is not None):
        return [vocab.eos_id]
    return None


def _check_args(length: int, num_samples: int, window: int | None) -> None:
    if not isinstance(length, (int, np.integer)) or not 0 <= length <= MAX_LENGTH:
        raise ConfigError(f"generate length must be an integer in [0, {MAX_LENGTH}], "
                          f"got {length!r}")
    if not isinstance(num_samples, (int, np.integer)) or not 0 <= num_samples <= MAX_SAMPLES:
        raise ConfigError(f"generate num_samples must be an integer in [0, {MAX_SAMPLES}], "
                          f"got {num_samples!r}")
    if window is not None and (not isinstance(window, (int, np.integer)) or window < 1):
        raise ConfigError(f"generate.window must be an integer >= 1 or null, got {window!r}")


def generate(
    model: StepModel,
    vocab: Any,
    sampler: Any,
    *,
    prompt: str = "",
    length: int = 200,
    num_samples: int = 1,
    window: int | None = None,
    rng: np.random.Generator | None = None,
    stop_at_eos: bool | None = None,
    start: Sequence[int] | None = None,
) -> list[str]:
    """``num_samples`` texts, each the prompt followed by characters drawn by ``sampler``.

    ``stop_at_eos`` defaults to "the vocabulary has an eos". Sample s calls the sampler with
    ``sample_index=s`` and ``step`` = number of characters it sampled before, so a course-seeded
    categorical sampler reproduces the course's ``sample(..., seed=course_seed + s)``.
    """
    decoder = Sample.from_config(Sample.schema(), sampler=sampler)
    return [g.text for g in generate_scored(
        model, vocab, decoder, prompt=prompt, length=length, num_samples=num_samples,
        window=window, rng=rng, stop_at_eos=stop_at_eos, start=start)]


def check_generation_memory(model: Any, vocab_size: int, decoder: Decoder, num_samples: int,
                            length: int, window: int | None) -> None:
    """A one-line ConfigError when the rows decoded together (a beam's width, the samples
    drawn) would not fit in memory: per row the model's forward pass over the context it
    reads each step (its window), the logits with their log-probabilities and choice scores,
    and the output so far."""
    from framework.memory import check_buffers, forward_bytes

    rows = (int(decoder.cfg.width) if hasattr(decoder, "nbest")
            else 1 if decoder.deterministic else int(num_samples))
    itemsize = np.dtype(getattr(model, "dtype", "float32")).itemsize
    need = (forward_bytes(model, rows, window or 1) + rows * 3 * vocab_size * itemsize
            + 8 * rows * int(length))
    check_buffers(f"generating {rows:,} row(s) at once", need,
                  f"{rows:,} x {vocab_size:,} symbols, {length:,} steps",
                  "lower decoder.width, num_samples or length")


def generate_scored(
    model: StepModel,
    vocab: Any,
    decoder: Decoder,
    *,
    prompt: str = "",
    length: int = 200,
    num_samples: int = 1,
    window: int | None = None,
    rng: np.random.Generator | None = None,
    stop_at_eos: bool | None = None,
    start: Sequence[int] | None = None,
) -> list[Generated]:
    """The prompt continued by ``decoder``, with each output's log-probability.

    A sampling decoder gives ``num_samples`` outputs (they share one batch); greedy gives one;
    beam search its ``min(num_samples, width)`` best distinct outputs, best first.
    """
    _check_args(length, num_samples, window)
    if len(prompt) > MAX_PROMPT:
        raise ConfigError(f"the prompt has {len(prompt):,} characters, more than {MAX_PROMPT:,}; "
                          f"shorten it")
    prompt_ids = encode_prompt(vocab, prompt)
    stop = vocab.eos is not None if stop_at_eos is None else bool(stop_at_eos)
    if stop and vocab.eos is None:
        raise ConfigError("stop_at_eos needs a vocabulary with an end-of-sequence character")
    eos_id = vocab.stoi[vocab.eos] if stop else None
    if start is not None:
        start = [int(i) for i in start]  # given by the caller (see start_ids)
    elif vocab.eos is not None:
        start = [-1]  # the course's all-zero first input
    elif prompt_ids:
        start = []
    else:
        start = [vocab.stoi["\n"] if "\n" in vocab.stoi else 0]
    context = start + prompt_ids
    rng = np.random.default_rng() if rng is None else rng
    if num_samples == 0:
        return []
    decoder.check_vocabulary(vocab.size)
    check_generation_memory(model, vocab.size, decoder, num_samples, length, window)
    step_model = model if window is None else WindowedModel(model, window)
    if length == 0:  # nothing to choose: the prompt alone
        from framework.nn.decoding import Hypothesis

        rows = 1 if decoder.deterministic else num_samples
        hyps = [Hypothesis([], 0.0, False)] * rows
    elif hasattr(decoder, "nbest"):
        n = min(num_samples, decoder.cfg.width)
        hyps = decoder.nbest(step_model, 1, start=context, max_length=length, eos_id=eos_id,
                             n=n)[0]
    else:
        rows = 1 if decoder.deterministic else num_samples
        hyps = decoder.decode(step_model, rows, start=context, max_length=length, eos_id=eos_id,
                              rng=rng)
    if getattr(vocab, "is_chars", True):
        return [Generated(prompt + "".join(vocab.chars[i] for i in h.ids), h.score, h.finished)
                for h in hyps]
    # Token vocabularies: the prompt's tokens and the chosen ones, one space between tokens.
    head = [vocab.chars[i] for i in prompt_ids]
    return [Generated(vocab.join(head + [vocab.chars[i] for i in h.ids]), h.score, h.finished)
            for h in hyps]


def format_generated(texts: Sequence[str], eos: str | None,
                     scores: Sequence[float] | None = None) -> str:
    """Outputs as printed: names (a vocabulary with an eos) one per line, texts separated by a
    blank line.  With ``scores``, a name's line ends with a tab and its log-probability; a text
    is followed by a ``log-probability <score>`` line."""
    texts = list(texts)
    if scores is not None:
        if eos is not None:
            texts = [f"{t}\t{s:.4f}" for t, s in zip(texts, scores, strict=True)]
        else:
            texts = [f"{t}\nlog-probability {s:.4f}" for t, s in zip(texts, scores, strict=True)]
    return ("\n" if eos is not None else "\n\n").join(texts)


def _run(model: StepModel, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
    """Feed ids (T, B) step by step; returns the last logits and the state."""
    logits = None
    for column in ids:
        logits, state = model.step(column, state)
    return logits, state


__all__ = ["MAX_LENGTH", "Generated", "StepModel", "WindowedModel", "encode_prompt",
           "check_generation_memory", "format_generated", "generate", "generate_scored",
           "start_ids",
           "unknown_symbols_message"]
