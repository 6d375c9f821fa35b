"""Attention plugins (registry ATTENTIONS): ``additive`` (the course's), ``dot`` (Luong), ``none``.

An attention reads the encoder's outputs ``memory`` (S, B, He), a mask ``mask`` (S, B) of the
valid source positions (True) and a query, the decoder's previous top hidden state (B, Hd), and
returns a context vector (B, He) and the attention weights (S, B): a softmax over the valid
positions of each column (padded positions get weight 0 and no gradient), and the context is the
weighted sum of the memory.  Every attention, Luong's dot product included, scores the *previous*
decoder state (Bahdanau's placement), so the context can be fed to the decoder's input at the
step it is computed for.

The query-independent part of the scores (``keys``: the memory's projection) is computed once per
source batch by :meth:`Attention.keys`, not once per decoder step; its gradient is summed over the
steps and sent back once by :meth:`Attention.keys_backward`.  So one decoder step is::

    keys = attention.keys(params, memory)                       # once per source batch
    context, weights, cache = attention.forward(params, memory, keys, mask, query)
    grads, dmemory, dkeys, dquery = attention.backward(params, cache, dcontext)
    grads2, dmemory2 = attention.keys_backward(params, memory, dkeys_summed)   # once

Plugins are built with the sizes they connect: ``ATTENTIONS.build(cfg, memory_size=He,
query_size=Hd)``.  Parameters are named ``attn.*`` in the model's flat dict; float32 by default,
float64 (or wider) for the gradient checks: the arithmetic follows the parameters' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.cell import as_dtype, xavier_uniform
from framework.registry import ATTENTIONS, Plugin

PREFIX = "attn."


def masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 (source positions) of ``scores`` (S, B) restricted to ``mask``;
    masked positions get exactly 0.  Every column needs at least one valid position."""
    z = np.where(mask, scores, -np.inf)
    z = z - z.max(axis=0, keepdims=True)
    w = np.exp(z)
    w /= w.sum(axis=0, keepdims=True)
    return w


def softmax_backward(weights: np.ndarray, dweights: np.ndarray) -> np.ndarray:
    """d loss / d scores from d loss / d weights, for weights = softmax over axis 0; masked
    positions (weight 0) get 0."""
    return weights * (dweights - (weights * dweights).sum(axis=0, keepdims=True))


def check_memory(memory: Any, mask: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``memory`` (S, B, size) and a boolean ``mask`` (S, B) with a valid position per column."""
    memory = np.asarray(memory)
    mask = np.asarray(mask)
    if memory.ndim != 3 or memory.shape[2] != size:
        raise DataError(f"attention memory must have shape (S, B, {size}), got {memory.shape}")
    if mask.shape != memory.shape[:2] or mask.dtype != np.bool_:
        raise DataError(f"attention mask must be a boolean (S, B) = {memory.shape[:2]} array, "
                        f"got shape {mask.shape} dtype {mask.dtype}")
    if mask.size and not mask.any(axis=0).all():
        raise DataError("every source in an attention batch needs at least one valid position")
    return memory, mask


class Attention(Plugin):
    """Base of the attention plugins: ``from_config(cfg, memory_size=, query_size=)``.

    ``context_size`` is the width of the context fed to the decoder (0 for ``none``).
    """

    context_size: int

    @classmethod
    def from_config(cls, cfg: Any, *, memory_size: int, query_size: int) -> Attention:
        return cls(cfg, memory_size=memory_size, query_size=query_size)

    def __init__(self, cfg: Any = None, /, *, memory_size: int, query_size: int,
                 **options: Any) -> None:
        super().__init__(cfg, **options)
        for key, value in (("memory_size", memory_size), ("query_size", query_size)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"attention '{self.name}': {key} must be >= 1, got {value!r}")
        self.memory_size = int(memory_size)
        self.query_size = int(query_size)
        self.context_size = self.memory_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of :meth:`init_params`'s arrays, unallocated."""
        return {}

    def init_params(self, rng: Any, dtype: Any = "float32") -> dict[str, np.ndarray]:
        """Fresh parameters (drawn in float64, then cast)."""
        as_dtype(dtype)
        return {}

    def keys(self, params: dict[str, np.ndarray], memory: np.ndarray) -> np.ndarray:
        """The query-independent projection of ``memory`` (S, B, He) the scores read."""
        return memory

    def keys_backward(self, params: dict[str, np.ndarray], memory: np.ndarray,
                      dkeys: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(parameter gradients, d loss / d memory) from the summed gradient of the keys."""
        return {}, dkeys

    def scores(self, params: dict[str, np.ndarray], keys: np.ndarray,
               query: np.ndarray) -> tuple[np.ndarray, Any]:
        """Energies (S, B) of every source position for ``query`` (B, Hd), and a cache."""
        raise NotImplementedError

    def scores_backward(self, params: dict[str, np.ndarray], cache: Any, dscores: np.ndarray
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(parameter gradients, d keys (S, B, K), d query (B, Hd)) from d scores (S, B)."""
        raise NotImplementedError

    def forward(self, params: dict[str, np.ndarray], memory: np.ndarray, keys: np.ndarray,
                mask: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        """(context (B, He), weights (S, B), cache for :meth:`backward`)."""
        energies, score_cache = self.scores(params, keys, query)
        weights = masked_softmax(energies, mask)
        context = np.einsum("sb,sbh->bh", weights, memory)
        return context, weights, (memory, weights, score_cache)

    def backward(self, params: dict[str, np.ndarray], cache: Any, dcontext: np.ndarray
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """(parameter gradients, d memory (S, B, He) through the weighted sum, d keys,
        d query (B, Hd)) from d loss / d context (B, He)."""
        memory, weights, score_cache = cache
        dmemory = weights[:, :, None] * dcontext[None]
        dweights = np.einsum("sbh,bh->sb", memory, dcontext)
        dscores = softmax_backward(weights, dweights)
        grads, dkeys, dquery = self.scores_backward(params, score_cache, dscores)
        return grads, dmemory, dkeys, dquery

    def attend(self, params: dict[str, np.ndarray], memory: Any, mask: Any,
               query: Any) -> tuple[np.ndarray, np.ndarray]:
        """One query against checked ``memory``/``mask``: (context, weights), no cache kept."""
        memory, mask = check_memory(memory, mask, self.memory_size)
        context, weights, _ = self.forward(params, memory, self.keys(params, memory), mask,
                                           np.asarray(query))
        return context, weights


@dataclass
class AdditiveConfig:
    units: int = 10  # `attention.units=`: width of the tanh layer (the course's Dense(10))

    def __post_init__(self) -> None:
        if isinstance(self.units, bool) or self.units < 1:
            raise ValueError(f"units must be >= 1, got {self.units}")


@ATTENTIONS.register("additive", schema=AdditiveConfig)
class Additive(Attention):
    """Bahdanau's (the course's) attention: e[s, b] = v . tanh(memory[s, b] W_k + query[b] W_q
    + b).  Parameters ``attn.W_k`` (He, A), ``attn.W_q`` (Hd, A), ``attn.b`` (A,), ``attn.v`` (A,).

    The course's exercise concatenates [s_prev; a_s] into Dense(10, tanh) then Dense(1, relu);
    [s; a] W is s W_q + a W_k, and the energy here is linear in the tanh layer (Bahdanau's v),
    so no position's energy is clipped at 0.
    """

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        A = self.cfg.units
        return {f"{PREFIX}W_k": (self.memory_size, A), f"{PREFIX}W_q": (self.query_size, A),
                f"{PREFIX}b": (A,), f"{PREFIX}v": (A,)}

    def init_params(self, rng: Any, dtype: Any = "float32") -> dict[str, np.ndarray]:
        """Glorot-uniform W_k, W_q and v (a column A x 1), zero bias; in that draw order."""
        dt = as_dtype(dtype)
        A = self.cfg.units
        values = {f"{PREFIX}W_k": xavier_uniform(rng, self.memory_size, A),
                  f"{PREFIX}W_q": xavier_uniform(rng, self.query_size, A),
                  f"{PREFIX}b": np.zeros(A),
                  f"{PREFIX}v": xavier_uniform(rng, A, 1)[:, 0]}
        return {k: np.ascontiguousarray(v, dtype=dt) for k, v in values.items()}

    def keys(self, params: dict[str, np.ndarray], memory: np.ndarray) -> np.ndarray:
        return np.matmul(memory, params[f"{PREFIX}W_k"])

    def keys_backward(self, params: dict[str, np.ndarray], memory: np.ndarray,
                      dkeys: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        dW_k = np.einsum("sbh,sba->ha", memory, dkeys)
        return {f"{PREFIX}W_k": dW_k}, np.matmul(dkeys, params[f"{PREFIX}W_k"].T)

    def scores(self, params: dict[str, np.ndarray], keys: np.ndarray,
               query: np.ndarray) -> tuple[np.ndarray, Any]:
        q = np.matmul(query, params[f"{PREFIX}W_q"]) + params[f"{PREFIX}b"]  # (B, A)
        hidden = np.tanh(keys + q[None])  # (S, B, A)
        return np.matmul(hidden, params[f"{PREFIX}v"]), (query, hidden)

    def scores_backward(self, params: dict[str, np.ndarray], cache: Any, dscores: np.ndarray
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        query, hidden = cache
        v = params[f"{PREFIX}v"]
        dv = np.einsum("sba,sb->a", hidden, dscores)
        dz = dscores[:, :, None] * v * (1 - hidden * hidden)  # (S, B, A): d keys, too
        dq = dz.sum(axis=0)  # (B, A)
        grads = {f"{PREFIX}W_q": np.matmul(query.T, dq), f"{PREFIX}b": dq.sum(axis=0),
                 f"{PREFIX}v": dv}
        return grads, dz, np.matmul(dq, params[f"{PREFIX}W_q"].T)


@dataclass
class DotConfig:
    general: bool = False  # `attention.general=true`: Luong's general score memory W . query


@ATTENTIONS.register("dot", schema=DotConfig)
class Dot(Attention):
    """Luong's dot-product score e[s, b] = memory[s, b] . query[b] (needs He == Hd), or with
    ``general``, memory[s, b] W . query[b] with ``attn.W`` (He, Hd) (any sizes).  Unscaled."""

    def __init__(self, cfg: Any = None, /, *, memory_size: int, query_size: int,
                 **options: Any) -> None:
        super().__init__(cfg, memory_size=memory_size, query_size=query_size, **options)
        if not self.cfg.general and self.memory_size != self.query_size:
            raise ConfigError(
                f"attention 'dot' compares encoder outputs ({self.memory_size} values) with the "
                f"decoder state ({self.query_size}): make the sizes equal or set "
                f"attention.general=true")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        if not self.cfg.general:
            return {}
        return {f"{PREFIX}W": (self.memory_size, self.query_size)}

    def init_params(self, rng: Any, dtype: Any = "float32") -> dict[str, np.ndarray]:
        dt = as_dtype(dtype)
        if not self.cfg.general:
            return {}
        W = xavier_uniform(rng, self.memory_size, self.query_size)
        return {f"{PREFIX}W": np.ascontiguousarray(W, dtype=dt)}

    def keys(self, params: dict[str, np.ndarray], memory: np.ndarray) -> np.ndarray:
        return np.matmul(memory, params[f"{PREFIX}W"]) if self.cfg.general else memory

    def keys_backward(self, params: dict[str, np.ndarray], memory: np.ndarray,
                      dkeys: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if not self.cfg.general:
            return {}, dkeys
        W = params[f"{PREFIX}W"]
        return ({f"{PREFIX}W": np.einsum("sbh,sbq->hq", memory, dkeys)},
                np.matmul(dkeys, W.T))

    def scores(self, params: dict[str, np.ndarray], keys: np.ndarray,
               query: np.ndarray) -> tuple[np.ndarray, Any]:
        return np.einsum("sbq,bq->sb", keys, query), (keys, query)

    def scores_backward(self, params: dict[str, np.ndarray], cache: Any, dscores: np.ndarray
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        keys, query = cache
        dkeys = dscores[:, :, None] * query[None]
        return {}, dkeys, np.einsum("sb,sbq->bq", dscores, keys)


@ATTENTIONS.register("none")
class NoAttention(Attention):
    """No context (width 0): the decoder reads only its previous token and starts from the
    encoder's final state (the ablation).  Its weights are zeros."""

    def __init__(self, cfg: Any = None, /, *, memory_size: int, query_size: int,
                 **options: Any) -> None:
        super().__init__(cfg, memory_size=memory_size, query_size=query_size, **options)
        self.context_size = 0

    def keys(self, params: dict[str, np.ndarray], memory: np.ndarray) -> np.ndarray:
        return memory[:, :, :0]

    def forward(self, params: dict[str, np.ndarray], memory: np.ndarray, keys: np.ndarray,
                mask: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        S, B = mask.shape
        return (np.zeros((B, 0), dtype=memory.dtype), np.zeros((S, B), dtype=memory.dtype),
                (memory.shape, query.shape, memory.dtype))

    def backward(self, params: dict[str, np.ndarray], cache: Any, dcontext: np.ndarray
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        mshape, qshape, dtype = cache
        return ({}, np.zeros(mshape, dtype), np.zeros(mshape[:2] + (0,), dtype),
                np.zeros(qshape, dtype))

    def keys_backward(self, params: dict[str, np.ndarray], memory: np.ndarray,
                      dkeys: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {}, np.zeros_like(memory)


__all__ = ["Additive", "Attention", "Dot", "NoAttention", "check_memory", "masked_softmax",
           "softmax_backward"]
