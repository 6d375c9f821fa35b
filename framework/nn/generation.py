"""Text generation from a trained model with any sampler plugin.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from framework.errors import ConfigError, DataError

# Bounds of one generate() call. The work is num_samples x (prompt + length) model steps (times
# the window with ``window``); these keep a typo (length=10000000) from running for hours.
MAX_LENGTH = 100_000
MAX_SAMPLES = 10_000
MAX_PROMPT = 100_000


class StepModel(Protocol):
    def zero_state(self, batch: int) -> Any: ...

    def step(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...


def encode_prompt(vocab: Any, prompt: str) -> list[int]:
    """Prompt symbols as ids (characters, or whitespace-separated tokens of a token vocabulary);
    unknown ones raise a DataError that names them."""
    symbols = vocab.split(prompt) if hasattr(vocab, "split") else list(prompt)
    unknown = sorted({c for c in symbols if c not in vocab.stoi})
    if unknown:
        shown = ", ".join(repr(c) for c in unknown)
        hint = ""
        if any(c.isupper() for c in unknown) and all(
            c.lower() in vocab.stoi for c in unknown if c.isupper()
        ):
            hint = " (this vocabulary is lower-case; lower-case the prompt)"
        if getattr(vocab, "is_chars", True):
            raise DataError(
                f"prompt has characters that are not in the vocabulary: {shown}{hint}; "
                f"the vocabulary is {''.join(vocab.chars)!r}"
            )
        listed = " ".join(vocab.chars[:40]) + (" ..." if vocab.size > 40 else "")
        raise DataError(f"prompt has tokens that are not in the vocabulary: {shown}; separate "
                        f"tokens by spaces and use only the model's tokens: {listed}")
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
    """``num_samples`` texts, each the prompt followed by the generated characters.

    ``stop_at_eos`` defaults to "the vocabulary has an eos". Sample s calls the sampler with
    ``sample_index=s`` and ``step`` = number of characters it sampled before, so a course-seeded
    categorical sampler reproduces the course's ``sample(..., seed=course_seed + s)``.
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

    # Samples share one batch (one model.step per character for all of them), except with a
    # course-seeded sampler, where each sample runs alone so its numerics match a B=1 run.
    if getattr(sampler, "course_seed", None) is not None:
        groups = [[s] for s in range(num_samples)]
    else:
        groups = [list(range(num_samples))]
    sampled: list[list[int]] = []
    for group in groups:
        sampled += _generate_group(model, sampler, context, group, length, window, eos_id, rng)
    if getattr(vocab, "is_chars", True):
        return [prompt + "".join(vocab.chars[i] for i in ids) for ids in sampled]
    # Token vocabularies: the prompt's tokens and the sampled ones, one space between tokens.
    head = [vocab.chars[i] for i in prompt_ids]
    return [vocab.join(head + [vocab.chars[i] for i in ids]) for ids in sampled]


def _run(model: StepModel, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
    """Feed ids (T, B) step by step; returns the last logits and the state."""
    logits = None
    for column in ids:
        logits, state = model.step(column, state)
    return logits, state


def _generate_group(
    model: StepModel,
    sampler: Any,
    context: list[int],
    group: Sequence[int],
    length: int,
    window: int | None,
    eos_id: int | None,
    rng: np.random.Generator,
) -> list[list[int]]:
    batch = len(group)
    history = np.repeat(np.asarray(context, dtype=np.int64)[:, None], batch, axis=1)  # (T, B)
    out: list[list[int]] = [[] for _ in group]
    done = np.zeros(batch, dtype=bool)
    if window is not None and len(history) < window:
        # The course's generate_output left-pads to the window with zero input rows, so a windowed
        # model always sees W steps, as in training (not a shorter run from the zero state).
        pad = np.full((window - len(history), batch), -1, dtype=np.int64)
        history = np.concatenate([pad, history], axis=0)
    if window is None:
        logits, state = _run(model, history, model.zero_state(batch))
    for k in range(length):
        if window is not None:
            logits, _ = _run(model, history[-window:], model.zero_state(batch))
        rows = np.asarray(logits, dtype=np.float64)
        nxt = np.zeros(batch, dtype=np.int64)
        for b, s in enumerate(group):
            if done[b]:
                continue  # finished rows keep stepping (cheap) but are never sampled again
            idx = int(sampler(rows[b], rng=rng, step=k, sample_index=s))
            nxt[b] = idx
            if idx == eos_id:
                done[b] = True
            else:
                out[b].append(idx)
        if done.all() or k == length - 1:
            break
        if window is None:
            logits, state = model.step(nxt, state)
        else:
            history = np.concatenate([history, nxt[None]], axis=0)[-window:]
    return out


__all__ = ["StepModel", "encode_prompt", "generate", "start_ids"]
