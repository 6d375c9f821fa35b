"""Decoding strategies (registry DECODERS): ``greedy``, ``sample`` and ``beam``, for any step model.

A step model has ``zero_state(batch)`` and ``step(ids (B,), state) -> (logits (B, V), state)``
(:class:`framework.nn.generation.StepModel`: the language model, or a seq2seq decoder over an
encoded source batch, :meth:`framework.nn.models.seq2seq.Seq2Seq.stepper`), and optionally
``select_state(state, index)``, which keeps the rows ``index`` of a state (repeated or reordered);
without it every array of the (nested lists and tuples of) state is indexed on its first axis.

``decoder.decode(model, batch, start=(-1,), max_length=..., eos_id=...)`` feeds the ids of
``start`` to every row (-1, the zero input, is the start token of a line model and of a seq2seq
decoder; a prompt's ids follow it), then chooses up to ``max_length`` ids per row, stopping a
row at ``eos_id`` (None: never).  It returns one :class:`Hypothesis` per row: the chosen ids
without the end id, their total log-probability under the model (the end id's included when the
row ended with it; with ``sample``, under the model, not under the sampler's reshaped
distribution) and whether the row ended.

Beam search keeps ``width`` hypotheses per row and ranks finished ones by score / lp(n), GNMT's
length penalty lp(n) = ((5 + n) / 6) ** length_penalty with n the number of chosen ids (the end
id included): 0 (the default) ranks by total log-probability, larger values favour longer
outputs.  A row stops when none of its live hypotheses can still beat its best finished one (a
live score only falls as it grows, and lp is at most lp(max_length)), so the result is the best
hypothesis the beam holds; with width 1 that is the greedy output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from framework.errors import ConfigError
from framework.nn.generation import MAX_LENGTH
from framework.registry import DECODERS, SAMPLERS, Plugin


class Hypothesis(NamedTuple):
    ids: list[int]  # the chosen ids, without the end id
    score: float  # total log-probability of the chosen ids (and of the end id when finished)
    finished: bool  # the row ended with the end id (else it reached max_length)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities (B, V) in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def select_rows(state: Any, index: np.ndarray) -> Any:
    """Rows ``index`` of every array in a nested list/tuple state (first axis)."""
    if isinstance(state, np.ndarray):
        return state[index]
    if isinstance(state, list | tuple):
        return type(state)(select_rows(s, index) for s in state)
    if state is None:
        return None
    raise TypeError(f"cannot select rows of a state part of type {type(state).__name__}; give "
                    f"the model a select_state(state, index) method")


def select_state(model: Any, state: Any, index: np.ndarray) -> Any:
    """The model's own ``select_state`` when it has one, else :func:`select_rows`."""
    own = getattr(model, "select_state", None)
    return own(state, index) if own is not None else select_rows(state, index)


def check_decode_args(batch: int, start: Sequence[int], max_length: int) -> list[int]:
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ConfigError(f"decoding needs a batch of >= 1 rows, got {batch!r}")
    if (isinstance(max_length, bool) or not isinstance(max_length, int | np.integer)
            or not 1 <= max_length <= MAX_LENGTH):
        raise ConfigError(f"the decoding length must be an integer in [1, {MAX_LENGTH}], got "
                          f"{max_length!r}")
    start = [int(i) for i in start]
    if not start:
        raise ConfigError("decoding needs at least one start id to feed (-1 is the zero input)")
    return start


def feed_start(model: Any, batch: int, start: Sequence[int]) -> tuple[np.ndarray, Any]:
    """Feed every start id to ``batch`` rows from the zero state: (last logits, state)."""
    state = model.zero_state(batch)
    logits = None
    for i in start:
        logits, state = model.step(np.full(batch, i, dtype=np.int64), state)
    return np.asarray(logits, dtype=np.float64), state


class Decoder(Plugin):
    """Base of the decoding plugins."""

    def decode(self, model: Any, batch: int, *, start: Sequence[int] = (-1,),
               max_length: int = 100, eos_id: int | None = None,
               rng: np.random.Generator | None = None) -> list[Hypothesis]:
        """One :class:`Hypothesis` per row (see the module docstring)."""
        raise NotImplementedError


class _OneAtATime(Decoder):
    """Greedy and sampling: one id per row per step, chosen by :meth:`choose`."""

    def choose(self, logits: np.ndarray, *, rng: np.random.Generator, step: int,
               live: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decode(self, model: Any, batch: int, *, start: Sequence[int] = (-1,),
               max_length: int = 100, eos_id: int | None = None,
               rng: np.random.Generator | None = None) -> list[Hypothesis]:
        start = check_decode_args(batch, start, max_length)
        rng = np.random.default_rng() if rng is None else rng
        logits, state = feed_start(model, batch, start)
        out: list[list[int]] = [[] for _ in range(batch)]
        scores = np.zeros(batch)
        done = np.zeros(batch, dtype=bool)
        rows = np.arange(batch)
        for k in range(max_length):
            live = ~done
            nxt = self.choose(logits, rng=rng, step=k, live=live)
            scores[live] += log_softmax(logits)[rows, nxt][live]
            for b in np.flatnonzero(live).tolist():
                if nxt[b] == eos_id:
                    done[b] = True
                else:
                    out[b].append(int(nxt[b]))
            if done.all() or k == max_length - 1:
                break
            logits, state = model.step(nxt, state)
            logits = np.asarray(logits, dtype=np.float64)
        return [Hypothesis(ids, float(s), bool(d)) for ids, s, d in zip(out, scores, done,
                                                                          strict=True)]


@DECODERS.register("greedy")
class Greedy(_OneAtATime):
    """The most likely id at every step (the first one on ties, as the ``greedy`` sampler)."""

    def choose(self, logits: np.ndarray, *, rng: np.random.Generator, step: int,
               live: np.ndarray) -> np.ndarray:
        return np.argmax(logits, axis=1)


@DECODERS.register("sample")
class Sample(_OneAtATime):
    """Each id drawn by a SAMPLERS plugin (``sampler=`` and its options): built with
    ``DECODERS.build(cfg, sampler=the built sampler)``; the default is ``categorical``.
    Row b is the sampler's ``sample_index`` b, ``step`` counts its chosen ids."""

    @classmethod
    def from_config(cls, cfg: Any, *, sampler: Any = None) -> Sample:
        decoder = cls(cfg)
        decoder.sampler = sampler if sampler is not None else SAMPLERS.build(
            {"name": "categorical"})
        return decoder

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        self.sampler = SAMPLERS.build({"name": "categorical"})

    def choose(self, logits: np.ndarray, *, rng: np.random.Generator, step: int,
               live: np.ndarray) -> np.ndarray:
        nxt = np.zeros(len(logits), dtype=np.int64)
        for b in np.flatnonzero(live).tolist():
            nxt[b] = int(self.sampler(logits[b], rng=rng, step=step, sample_index=b))
        return nxt


@dataclass
class BeamConfig:
    width: int = 5  # `decoder.width=`: hypotheses kept per row
    length_penalty: float = 0.0  # GNMT's alpha: rank by score / ((5 + n) / 6) ** alpha

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if not 0.0 <= self.length_penalty <= 10.0:
            raise ValueError(f"length_penalty must be in [0, 10], got {self.length_penalty}")


@DECODERS.register("beam", schema=BeamConfig)
class Beam(Decoder):
    """Beam search (see the module docstring); every row's best hypothesis."""

    def penalty(self, n: int | np.ndarray) -> Any:
        """GNMT's lp(n) = ((5 + n) / 6) ** length_penalty."""
        return ((5.0 + n) / 6.0) ** self.cfg.length_penalty

    def decode(self, model: Any, batch: int, *, start: Sequence[int] = (-1,),
               max_length: int = 100, eos_id: int | None = None,
               rng: np.random.Generator | None = None) -> list[Hypothesis]:
        start = check_decode_args(batch, start, max_length)
        logits, state = feed_start(model, batch, start)
        V, K = logits.shape[1], self.cfg.width
        if K > V:
            raise ConfigError(f"decoder.width={K} is larger than the {V} ids of the target "
                              f"vocabulary; use a width in [1, {V}]")
        # Row b's live hypotheses are rows b*K .. b*K + K - 1; at first only one is real.
        state = select_state(model, state, np.repeat(np.arange(batch), K))
        logp = np.repeat(log_softmax(logits), K, axis=0)
        live = np.full((batch, K), -np.inf)
        live[:, 0] = 0.0
        history: list[list[list[int]]] = [[[] for _ in range(K)] for _ in range(batch)]
        finished: list[list[tuple[float, float, list[int]]]] = [[] for _ in range(batch)]
        done = np.zeros(batch, dtype=bool)
        bound_lp = self.penalty(max_length) if self.cfg.length_penalty > 0 else None
        for k in range(max_length):
            cand = (live[:, :, None] + logp.reshape(batch, K, V)).reshape(batch, K * V)
            parents = np.arange(batch * K).reshape(batch, K)  # unchanged rows of a done row
            tokens = np.zeros((batch, K), dtype=np.int64)
            new_live = np.full((batch, K), -np.inf)
            new_history = [list(h) for h in history]
            for b in np.flatnonzero(~done).tolist():
                order = np.argsort(-cand[b], kind="stable")
                kept = 0
                for flat in order.tolist():
                    score = cand[b, flat]
                    if score == -np.inf or kept == K:
                        break
                    parent, token = divmod(flat, V)
                    ids = history[b][parent] + [token]
                    if token == eos_id:
                        finished[b].append((score / self.penalty(len(ids)), score, ids[:-1]))
                        continue
                    parents[b, kept] = b * K + parent
                    tokens[b, kept] = token
                    new_live[b, kept] = score
                    new_history[b][kept] = ids
                    kept += 1
                for j in range(kept, K):
                    new_history[b][j] = []
                best_live = new_live[b, 0]
                bound = best_live if bound_lp is None else best_live / bound_lp
                if kept == 0 or (finished[b] and max(f[0] for f in finished[b]) >= bound):
                    done[b] = True
            live, history = new_live, new_history
            if done.all() or k == max_length - 1:
                break
            state = select_state(model, state, parents.reshape(-1))
            logits, state = model.step(tokens.reshape(-1), state)
            logp = log_softmax(logits)
        results = []
        for b in range(batch):
            pool = [(n, s, ids, True) for n, s, ids in finished[b]]
            if not done[b] or not pool:  # reached max_length: the live ones compete too
                pool += [(live[b, j] / self.penalty(len(history[b][j])), live[b, j],
                          history[b][j], False) for j in range(K) if live[b, j] > -np.inf]
            best = max(pool, key=lambda h: h[0])  # the first of equal scores
            results.append(Hypothesis(list(best[2]), float(best[1]), best[3]))
        return results


__all__ = ["Beam", "Decoder", "Greedy", "Hypothesis", "Sample", "check_decode_args",
           "feed_start", "log_softmax", "select_rows", "select_state"]
