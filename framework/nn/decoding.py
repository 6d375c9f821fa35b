"""Decoding strategies (registry DECODERS): ``greedy``, ``sample`` and ``beam``, for any step model.

A step model has ``zero_state(batch)`` and ``step(ids (B,), state) -> (logits (B, V), state)``
(:class:`StepModel`: the language model, or a seq2seq decoder over an encoded source batch,
:meth:`framework.nn.models.seq2seq.Seq2Seq.stepper`), and optionally
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
hypothesis the beam holds; with width 1 that is the greedy output.  ``beam.nbest(...)`` gives
each row's ``n`` best distinct hypotheses (n <= width), best first.

The commands build a decoder from their ``decoder`` config node (conf/decoder/: greedy, sample,
beam) with :func:`build_decoder`; a new decoder is one registered class (and an optional YAML).
A step model may also have ``prime(batch, ids) -> (logits, state)``, which feeds the start ids at
once (a windowed model runs its window only after the last one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from framework.errors import ConfigError, DivergenceError
from framework.registry import DECODERS, SAMPLERS, Plugin

# The most ids one decode (and one generate) call chooses per row: the work is rows x length
# model steps, and this keeps a typo (length=10000000) from running for hours.
MAX_LENGTH = 100_000
NON_FINITE = ("the model produced non-finite logits while decoding; the parameters have diverged "
              "(train with a lower learning rate or clipping)")


class StepModel(Protocol):
    def zero_state(self, batch: int) -> Any: ...

    def step(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...


class Hypothesis(NamedTuple):
    ids: list[int]  # the chosen ids, without the end id
    score: float  # total log-probability of the chosen ids (and of the end id when finished)
    finished: bool  # the row ended with the end id (else it reached max_length)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities (B, V) in float64."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    if not np.isfinite(top).all():  # max() propagates NaN; +inf would be the max
        raise DivergenceError(NON_FINITE)
    z = z - top
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
    prime = getattr(model, "prime", None)
    if prime is not None:
        logits, state = prime(batch, list(start))
        return np.asarray(logits, dtype=np.float64), state
    state = model.zero_state(batch)
    logits = None
    for i in start:
        logits, state = model.step(np.full(batch, i, dtype=np.int64), state)
    return np.asarray(logits, dtype=np.float64), state


class Decoder(Plugin):
    """Base of the decoding plugins."""

    # Every call gives the same output (greedy, beam): one output per input is enough.
    deterministic: bool = True
    # from_config takes the command's built `sampler` (build_decoder passes it).
    uses_sampler: bool = False

    def check_vocabulary(self, size: int) -> None:
        """Raise a one-line ConfigError when the options do not fit a ``size``-id vocabulary."""

    def decode(self, model: Any, batch: int, *, start: Sequence[int] = (-1,),
               max_length: int = 100, eos_id: int | None = None,
               rng: np.random.Generator | None = None) -> list[Hypothesis]:
        """One :class:`Hypothesis` per row (see the module docstring)."""
        raise NotImplementedError


class _OneAtATime(Decoder):
    """Greedy and sampling: one id per row per step, chosen by :meth:`choose`."""

    def choose(self, logits: np.ndarray, *, rng: np.random.Generator, step: int,
               live: np.ndarray, first_index: int = 0) -> np.ndarray:
        raise NotImplementedError

    def decode(self, model: Any, batch: int, *, start: Sequence[int] = (-1,),
               max_length: int = 100, eos_id: int | None = None,
               rng: np.random.Generator | None = None) -> list[Hypothesis]:
        start = check_decode_args(batch, start, max_length)
        rng = np.random.default_rng() if rng is None else rng
        return self._decode_rows(model, batch, start, max_length, eos_id, rng)

    def _decode_rows(self, model: Any, batch: int, start: list[int], max_length: int,
                     eos_id: int | None, rng: np.random.Generator,
                     first_index: int = 0) -> list[Hypothesis]:
        """Rows ``first_index`` .. ``first_index + batch - 1`` of a call, decoded together."""
        logits, state = feed_start(model, batch, start)
        out: list[list[int]] = [[] for _ in range(batch)]
        scores = np.zeros(batch)
        done = np.zeros(batch, dtype=bool)
        for k in range(max_length):
            live = ~done
            nxt = self.choose(logits, rng=rng, step=k, live=live, first_index=first_index)
            # Only the live rows' logits count (a finished row keeps stepping on id 0).
            on = np.flatnonzero(live)
            scores[on] += log_softmax(logits[on])[np.arange(len(on)), nxt[on]]
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
               live: np.ndarray, first_index: int = 0) -> np.ndarray:
        return np.argmax(logits, axis=1)


@DECODERS.register("sample")
class Sample(_OneAtATime):
    """Each id drawn by a SAMPLERS plugin (``sampler=`` and its options): built with
    ``DECODERS.build(cfg, sampler=the built sampler)``; the default is ``categorical``.
    Row b is the sampler's ``sample_index`` b, ``step`` counts its chosen ids.  The rows share
    one batch, except with a course-seeded sampler: each row then runs alone, so its numerics
    are those of a one-row run (the course's ``sample``)."""

    deterministic = False
    uses_sampler = True  # build_decoder passes the command's `sampler` node

    @classmethod
    def from_config(cls, cfg: Any, *, sampler: Any = None) -> Sample:
        decoder = cls(cfg)
        decoder.sampler = sampler if sampler is not None else SAMPLERS.build(
            {"name": "categorical"})
        return decoder

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        self.sampler = SAMPLERS.build({"name": "categorical"})

    def decode(self, model: Any, batch: int, *, start: Sequence[int] = (-1,),
               max_length: int = 100, eos_id: int | None = None,
               rng: np.random.Generator | None = None) -> list[Hypothesis]:
        if getattr(self.sampler, "course_seed", None) is None:
            return super().decode(model, batch, start=start, max_length=max_length,
                                  eos_id=eos_id, rng=rng)
        start = check_decode_args(batch, start, max_length)
        rng = np.random.default_rng() if rng is None else rng
        out: list[Hypothesis] = []
        for b in range(batch):
            out += self._decode_rows(model, 1, start, max_length, eos_id, rng, first_index=b)
        return out

    def choose(self, logits: np.ndarray, *, rng: np.random.Generator, step: int,
               live: np.ndarray, first_index: int = 0) -> np.ndarray:
        nxt = np.zeros(len(logits), dtype=np.int64)
        for b in np.flatnonzero(live).tolist():
            nxt[b] = int(self.sampler(logits[b], rng=rng, step=step,
                                      sample_index=first_index + b))
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

    def check_vocabulary(self, size: int) -> None:
        if self.cfg.width > size:
            raise ConfigError(f"decoder.width={self.cfg.width} is larger than the {size} "
                              f"symbols of the target vocabulary; use a width in [1, {size}]")

    def decode(self, model: Any, batch: int, *, start: Sequence[int] = (-1,),
               max_length: int = 100, eos_id: int | None = None,
               rng: np.random.Generator | None = None) -> list[Hypothesis]:
        return [best[0] for best in self.nbest(model, batch, start=start, max_length=max_length,
                                               eos_id=eos_id)]

    def nbest(self, model: Any, batch: int, *, start: Sequence[int] = (-1,),
              max_length: int = 100, eos_id: int | None = None,
              n: int = 1) -> list[list[Hypothesis]]:
        """Each row's ``n`` best distinct hypotheses (1 <= n <= width), best first."""
        start = check_decode_args(batch, start, max_length)
        K = self.cfg.width
        if isinstance(n, bool) or not 1 <= n <= K:
            raise ConfigError(f"beam search keeps {K} hypotheses per row; ask for 1 to {K} "
                              f"best ones, not {n!r}")
        logits, state = feed_start(model, batch, start)
        V = logits.shape[1]
        self.check_vocabulary(V)
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
                # Done when the n-th best finished one cannot be beaten any more.
                if kept == 0 or (len(finished[b]) >= n and sorted(
                        (f[0] for f in finished[b]), reverse=True)[n - 1] >= bound):
                    done[b] = True
            live, history = new_live, new_history
            if done.all() or k == max_length - 1:
                break
            state = select_state(model, state, parents.reshape(-1))
            logits, state = model.step(tokens.reshape(-1), state)
            logp = log_softmax(logits)
        results = []
        for b in range(batch):
            pool = [(norm, score, ids, True) for norm, score, ids in finished[b]]
            if not done[b] or len(pool) < n:  # reached max_length: the live ones compete too
                pool += [(live[b, j] / self.penalty(len(history[b][j])), live[b, j],
                          history[b][j], False) for j in range(K) if live[b, j] > -np.inf]
            pool.sort(key=lambda h: -h[0])  # stable: the first of equal scores first
            results.append([Hypothesis(list(ids), float(score), fin)
                            for _, score, ids, fin in pool[:n]])
        return results


def _plain(node: Any) -> Any:
    """A DictConfig as plain containers (other values unchanged)."""
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_decoder(node: Mapping[str, Any] | str, *, sampler: Any = None,
                  vocab_size: int | None = None) -> Decoder:
    """The decoder a command's ``decoder`` node names (``{"name": "beam", "width": 5}``, or just
    a name); ``sampler`` is the ``sampler`` node (or a built sampler) that ``sample`` draws with.
    With ``vocab_size`` the options are checked against the vocabulary (a beam wider than it).
    Every bad option is a one-line ConfigError naming the key."""
    node = _plain(node)
    if isinstance(node, str):
        node = {"name": node}
    if not isinstance(node, Mapping) or not isinstance(node.get("name"), str):
        raise ConfigError(f"decoder must name a decoding strategy: decoder="
                          f"{'|'.join(DECODERS.names())}, got {node!r}")
    context = {}
    if getattr(DECODERS.get(node["name"]), "uses_sampler", False):
        sampler = _plain(sampler)
        context["sampler"] = SAMPLERS.build(sampler) if isinstance(sampler, Mapping) else sampler
    decoder = DECODERS.build(dict(node), **context)
    if vocab_size is not None:
        decoder.check_vocabulary(int(vocab_size))
    return decoder


__all__ = ["MAX_LENGTH", "Beam", "Decoder", "Greedy", "Hypothesis", "Sample", "StepModel",
           "build_decoder", "check_decode_args", "feed_start", "log_softmax", "select_rows",
           "select_state"]
