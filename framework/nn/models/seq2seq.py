"""Seq2Seq: a recurrent encoder, an attention plugin and a recurrent decoder under a softmax.

Shapes are time-major.  A batch (``framework.data.feeds.parallel.Seq2SeqBatch`` or anything with
the same attributes) holds ``inputs`` (S, B) source ids right-padded with -1, ``lengths`` (B,)
source lengths, ``targets_in`` (T, B) the decoder's inputs (-1, the start token, then the target
ids; -1 padding) and ``targets`` (T, B) what each step must predict (the target ids then the
end-of-sequence id; -1 padding, which counts in no loss and sends no gradient).

- **Encoder**: a :class:`~framework.nn.encoder.SequenceEncoder` of any registered cell over the
  source ids (the cell's input projection is the source embedding), optionally bidirectional and
  stacked.  Its outputs at every step are the attention's memory (S, B, F), F = H_enc or 2 H_enc;
  padded steps are masked out of the attention.
- **Bridge**: the decoder starts from h0 = tanh(f W_bridge + b_bridge), f (B, F) being the
  encoder's top hidden state at each source's last valid step ([forward; backward] when
  bidirectional: the forward stack has then read the whole source, the backward stack too).  One
  learned projection gives every decoder layer its h (B, L * H_dec, split by layer), so the
  encoder and decoder may differ in cell, size, depth and direction; other state parts (an LSTM's
  c) start at zero.
- **Decoder**: a :class:`~framework.nn.stack.RecurrentStack` of any registered cell reading, at
  step t, [the previous target token, one-hot over the target vocabulary or through an
  ``embed_size`` embedding ``dec.embed``; the attention context for the previous top state];
  id -1 (the start token) is the zero vector.  Teacher forcing in training.
- **Head**: :class:`~framework.nn.heads.LMHead`, a softmax over the target vocabulary at every
  step, on the decoder's top states.

For decoding strategies (:mod:`framework.nn.decoding`): ``memory = model.encode(src, lengths)``,
then ``model.decoder_step(prev_ids, state, memory) -> (logits, state, weights)`` from
``state = memory.state0`` and ``prev_ids`` all -1; :meth:`Seq2Seq.stepper` wraps both as a step
model (``zero_state``/``step``/``select_state``).  Parameters: ``enc.*``, ``dec.embed``,
``dec.layers.*``, ``bridge.*``, ``attn.*``, ``out.*``, drawn in that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.cell import Cell, as_dtype, xavier_uniform
from framework.nn.encoder import SequenceEncoder, check_lengths
from framework.nn.heads import LMHead, check_reduction
from framework.nn.stack import RecurrentStack, State, build_cell, check_ids, check_stack_config
from framework.registry import ATTENTIONS

ENC, BRIDGE_W, BRIDGE_B, EMBED = "enc.", "bridge.W", "bridge.b", "dec.embed"


class Memory(NamedTuple):
    """What the decoder reads of an encoded source batch (B columns)."""

    outputs: np.ndarray  # (S, B, F) encoder outputs
    keys: np.ndarray  # (S, B, K) the attention's projection of the outputs
    mask: np.ndarray  # (S, B) bool, True at the valid source positions
    state0: State  # the decoder's initial state: one tuple of (B, H_dec) arrays per layer

    @property
    def batch(self) -> int:
        return self.mask.shape[1]

    def take(self, index: np.ndarray) -> Memory:
        """The memory of columns ``index`` (repeated or reordered, e.g. for beams)."""
        state = [tuple(s[index] for s in layer) for layer in self.state0]
        return Memory(self.outputs[:, index], self.keys[:, index], self.mask[:, index], state)


def source_mask(lengths: np.ndarray, steps: int) -> np.ndarray:
    """(S, B) bool: position s of column b is valid when s < lengths[b]."""
    return np.arange(steps)[:, None] < lengths[None, :]


class Seq2Seq:
    """Encoder-decoder with attention; see the module docstring for the architecture."""

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        encoder_cell: str | Cell = "lstm",
        encoder_hidden: int = 32,
        encoder_layers: int = 1,
        bidirectional: bool = True,
        decoder_cell: str | Cell = "lstm",
        decoder_hidden: int = 64,
        decoder_layers: int = 1,
        attention: str | Mapping[str, Any] | Any = "additive",
        embed_size: int | None = None,
        dropout: float = 0.0,
        init: str = "xavier",
        dtype: str = "float32",
        encoder_options: dict | None = None,
        decoder_options: dict | None = None,
    ) -> None:
        for key, value in (("source vocabulary size", src_vocab_size),
                           ("target vocabulary size", tgt_vocab_size)):
            if int(value) < 1:
                raise ConfigError(f"the {key} must be >= 1, got {value}")
        if embed_size is not None and int(embed_size) < 1:
            raise ConfigError(f"the target embedding size must be >= 1 or null, got {embed_size}")
        check_stack_config(encoder_layers, dropout)
        check_stack_config(decoder_layers, dropout)
        self.src_vocab_size = int(src_vocab_size)
        self.tgt_vocab_size = int(tgt_vocab_size)
        self.dtype = as_dtype(dtype)
        self.init = init
        enc_cell = build_cell(encoder_cell, encoder_hidden, init, encoder_options)
        dec_cell = build_cell(decoder_cell, decoder_hidden, init, decoder_options)
        self.encoder = SequenceEncoder(enc_cell, self.src_vocab_size, int(encoder_layers),
                                       float(dropout), ids=True, bidirectional=bidirectional)
        self.decoder_hidden = dec_cell.hidden_size
        self.decoder_layers = int(decoder_layers)
        # A plugin name, a config mapping, or an already validated schema instance.
        node = {"name": attention} if isinstance(attention, str) else (
            dict(attention) if isinstance(attention, Mapping) else attention)
        self.attention = ATTENTIONS.build(node, memory_size=self.encoder.feature_size,
                                          query_size=self.decoder_hidden)
        self.embed_size = None if embed_size is None else int(embed_size)
        self.token_size = self.tgt_vocab_size if self.embed_size is None else self.embed_size
        self.decoder = RecurrentStack(
            dec_cell, self.token_size + self.attention.context_size, self.decoder_layers,
            float(dropout), ids=False, prefix="dec.layers.")
        self.head = LMHead(self.decoder_hidden, self.tgt_vocab_size, init, prefix="out.")
        self.params: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ parameters
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of :meth:`init_params`'s arrays, in its order, unallocated."""
        shapes: dict[str, tuple[int, ...]] = {}
        enc = self.encoder
        for stack in enc.stacks:
            for layer in range(stack.num_layers):
                d_in = stack.input_size if layer == 0 else stack.hidden_size
                for key, shape in stack.cell.param_shapes(d_in).items():
                    shapes[f"{ENC}{stack.prefix}{layer}.{key}"] = shape
        if self.embed_size is not None:
            shapes[EMBED] = (self.tgt_vocab_size, self.embed_size)
        dec = self.decoder
        for layer in range(dec.num_layers):
            d_in = dec.input_size if layer == 0 else dec.hidden_size
            for key, shape in dec.cell.param_shapes(d_in).items():
                shapes[f"{dec.prefix}{layer}.{key}"] = shape
        shapes[BRIDGE_W] = (enc.feature_size, self.decoder_layers * self.decoder_hidden)
        shapes[BRIDGE_B] = (self.decoder_layers * self.decoder_hidden,)
        shapes.update(self.attention.param_shapes())
        shapes["out.W"] = (self.decoder_hidden, self.tgt_vocab_size)
        shapes["out.b"] = (self.tgt_vocab_size,)
        return shapes

    def init_params(self, rng: Any) -> dict[str, np.ndarray]:
        """Fresh parameters in :meth:`param_shapes`'s order (Glorot uniform for the embedding
        and the bridge, zero biases; cells, attention and head by their own rules)."""
        dt = self.dtype
        params = {ENC + k: v for k, v in self.encoder.init_params(rng, dt).items()}
        if self.embed_size is not None:
            params[EMBED] = xavier_uniform(rng, self.tgt_vocab_size, self.embed_size).astype(dt)
        params.update(self.decoder.init_params(rng, dt))
        width = self.decoder_layers * self.decoder_hidden
        params[BRIDGE_W] = xavier_uniform(rng, self.encoder.feature_size, width).astype(dt)
        params[BRIDGE_B] = np.zeros(width, dtype=dt)
        params.update(self.attention.init_params(rng, dt))
        params.update(self.head.init_params(rng, dt))
        self.params = params
        return params

    def _need_params(self) -> None:
        if not self.params:
            raise ConfigError("the model has no parameters yet; call init_params(rng) first")

    def _encoder_params(self) -> dict[str, np.ndarray]:
        n = len(ENC)
        return {k[n:]: v for k, v in self.params.items() if k.startswith(ENC)}

    # ------------------------------------------------------------------ encoding
    def _check_source(self, src: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
        src = check_ids(src, "source ids", -1, self.src_vocab_size, 2)
        lengths = check_lengths(lengths, src.shape[0], src.shape[1])
        return src, lengths

    def _encode(self, src: np.ndarray, lengths: np.ndarray,
                dropout_rng: Any) -> tuple[Memory, Any]:
        p = self.params
        outputs, feats, tape = self.encoder.forward_steps(self._encoder_params(), src, lengths,
                                                          dropout_rng)
        mask = source_mask(lengths, src.shape[0])
        keys = self.attention.keys(p, outputs)
        z = np.matmul(feats, p[BRIDGE_W])
        z += p[BRIDGE_B]
        h0 = np.tanh(z)
        H = self.decoder_hidden
        cell = self.decoder.cell
        state0 = []
        for layer in range(self.decoder_layers):
            h = np.array(h0[:, layer * H:(layer + 1) * H])
            rest = (np.zeros_like(h) for _ in range(cell.state_size - 1))
            state0.append((h, *rest))
        return Memory(outputs, keys, mask, state0), (tape, feats, h0)

    def encode(self, src: Any, lengths: Any = None) -> Memory:
        """The memory of source ids ``src`` (S, B) (-1 padded after ``lengths``; None: all S
        long), for :meth:`decoder_step`.  No dropout."""
        self._need_params()
        src, lengths = self._check_source(src, lengths)
        return self._encode(src, lengths, None)[0]

    # ------------------------------------------------------------------ decoding
    def _token_inputs(self, ids: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """(B, token_size): the embedding rows or one-hot rows of ``ids``; id -1 is zeros."""
        B = ids.shape[0]
        valid = ids >= 0
        if self.embed_size is None:
            x = np.zeros((B, self.tgt_vocab_size), dtype=dtype)
            x[np.flatnonzero(valid), ids[valid]] = 1
            return x
        x = self.params[EMBED][np.where(valid, ids, 0)]
        x[~valid] = 0
        return x

    def _step(self, ids: np.ndarray, state: State, memory: Memory,
              dropout_rng: Any) -> tuple[np.ndarray, State, np.ndarray, Any]:
        """One decoder step: (top output (B, H) after dropout, new state, weights, cache)."""
        p = self.params
        query = state[-1][0]
        context, weights, acache = self.attention.forward(p, memory.outputs, memory.keys,
                                                          memory.mask, query)
        x = np.concatenate([self._token_inputs(ids, query.dtype), context], axis=1)
        top, stateT, tape = self.decoder.forward(p, x[None], state, dropout_rng)
        return top[0], stateT, weights, (acache, tape, ids)

    def decoder_step(self, prev_ids: Any, state: State | None,
                     memory: Memory) -> tuple[np.ndarray, State, np.ndarray]:
        """One step of inference: the previous target ids (B,) (-1: the start token), the
        decoder state (None: ``memory.state0``) -> (logits (B, V) float64, next state,
        attention weights (S, B) of this step)."""
        self._need_params()
        ids = check_ids(prev_ids, "prev_ids", -1, self.tgt_vocab_size, 1)
        if ids.shape[0] != memory.batch:
            raise DataError(f"prev_ids has {ids.shape[0]} entries but the memory holds "
                            f"{memory.batch} sources")
        state = memory.state0 if state is None else list(state)
        top, stateT, weights, _ = self._step(ids, state, memory, None)
        logits = self.head.logits(self.params, top[None]).astype(np.float64)
        return logits, stateT, weights

    def stepper(self, memory: Memory) -> Seq2SeqStepper:
        """The decoder over ``memory`` as a step model for :mod:`framework.nn.decoding`."""
        return Seq2SeqStepper(self, memory)

    # ------------------------------------------------------------------ training
    def _check_batch(self, batch: Any) -> tuple[np.ndarray, ...]:
        self._need_params()
        src, lengths = self._check_source(batch.inputs, batch.lengths)
        V = self.tgt_vocab_size
        tgt_in = check_ids(batch.targets_in, "targets_in", -1, V, 2)
        tgt = check_ids(batch.targets, "targets", -1, V, 2)
        if tgt_in.shape != tgt.shape or tgt.shape[1] != src.shape[1]:
            raise DataError(f"targets_in {tgt_in.shape} and targets {tgt.shape} must have the "
                            f"same (T, B) shape, with B = {src.shape[1]} sources")
        return src, lengths, tgt_in, tgt

    def _teacher_forced(self, batch: Any, dropout_rng: Any) -> tuple[Any, ...]:
        src, lengths, tgt_in, tgt = self._check_batch(batch)
        memory, enc_cache = self._encode(src, lengths, dropout_rng)
        state = memory.state0
        tops, caches, weights = [], [], []
        for t in range(tgt_in.shape[0]):
            top, state, w, cache = self._step(tgt_in[t], state, memory, dropout_rng)
            tops.append(top)
            caches.append(cache)
            weights.append(w)
        return tgt, memory, enc_cache, np.stack(tops), caches, np.stack(weights)

    def loss(self, batch: Any) -> tuple[float, int, np.ndarray]:
        """Evaluation (no dropout, no gradients): (summed cross-entropy over the counted
        targets, their count, attention weights (T, S, B))."""
        tgt, _, _, tops, _, weights = self._teacher_forced(batch, None)
        loss_sum, count = self.head.loss(self.params, tops, tgt)
        return loss_sum, count, weights

    def evaluate(self, batch: Any) -> tuple[float, int, int]:
        """Evaluation with teacher forcing (no dropout, no gradients): (summed cross-entropy over
        the counted targets, their count, how many of them are the most likely id)."""
        tgt, _, _, tops, _, _ = self._teacher_forced(batch, None)
        loss_sum, count = self.head.loss(self.params, tops, tgt)
        predicted = self.head.logits(self.params, tops).argmax(axis=1)
        flat = tgt.reshape(-1)
        valid = flat >= 0
        return loss_sum, count, int(np.count_nonzero(predicted[valid] == flat[valid]))

    def loss_and_grads(self, batch: Any, *, reduction: str = "mean",
                       dropout_rng: Any = None) -> tuple[float, int, dict[str, np.ndarray]]:
        """(summed cross-entropy over the counted targets, their count, gradients of
        loss_sum / count ("mean") or loss_sum ("sum")) with teacher forcing."""
        check_reduction(reduction)
        tgt, memory, enc_cache, tops, caches, _ = self._teacher_forced(batch, dropout_rng)
        p = self.params
        loss_sum, count, grads, dtops = self.head.loss_and_grads(p, tops, tgt, reduction)
        dmemory = np.zeros_like(memory.outputs)
        dkeys = np.zeros_like(memory.keys)
        E = self.token_size
        demb = np.zeros_like(p[EMBED]) if self.embed_size is not None else None
        dstate = [tuple(np.zeros_like(s) for s in layer) for layer in memory.state0]
        for t in range(len(caches) - 1, -1, -1):
            acache, tape, ids = caches[t]
            g, dx, dstate0 = self.decoder.backward(tape, dtops[t][None], dstate)
            _add(grads, g)
            dx = dx[0]
            if demb is not None:
                valid = ids >= 0
                np.add.at(demb, ids[valid], dx[valid, :E])
            ga, dmem, dk, dquery = self.attention.backward(p, acache, dx[:, E:])
            _add(grads, ga)
            dmemory += dmem
            dkeys += dk
            dstate = [tuple(layer) for layer in dstate0]
            top_h = dstate[-1][0] + dquery
            dstate[-1] = (top_h, *dstate[-1][1:])
        if demb is not None:
            grads[EMBED] = demb
        enc_tape, feats, h0 = enc_cache
        dh0 = np.concatenate([layer[0] for layer in dstate], axis=1)
        dz = dh0 * (1 - h0 * h0)
        grads[BRIDGE_W] = np.matmul(feats.T, dz)
        grads[BRIDGE_B] = dz.sum(axis=0)
        dfeats = np.matmul(dz, p[BRIDGE_W].T)
        ga, dmem = self.attention.keys_backward(p, memory.outputs, dkeys)
        _add(grads, ga)
        dmemory += dmem
        enc_grads, _ = self.encoder.backward_steps(self._encoder_params(), enc_tape, dfeats,
                                                   dmemory)
        for key, value in enc_grads.items():
            grads[ENC + key] = value
        return loss_sum, count, grads


def _add(total: dict[str, np.ndarray], part: Mapping[str, np.ndarray]) -> None:
    for key, value in part.items():
        if key in total:
            total[key] = total[key] + value
        else:
            total[key] = value


class Seq2SeqStepper:
    """A :class:`Seq2Seq` decoder over one encoded batch, as a step model: the state is
    (decoder state, memory), so selecting beams selects their sources' memory too."""

    def __init__(self, model: Seq2Seq, memory: Memory) -> None:
        self.model = model
        self.memory = memory
        self.last_weights: np.ndarray | None = None  # (S, B) of the latest step, for heat maps

    def zero_state(self, batch: int) -> tuple[State, Memory]:
        if batch != self.memory.batch:
            raise DataError(f"the decoder was asked for {batch} rows but the memory holds "
                            f"{self.memory.batch} sources")
        return list(self.memory.state0), self.memory

    def step(self, ids: np.ndarray, state: tuple[State, Memory]
             ) -> tuple[np.ndarray, tuple[State, Memory]]:
        dec_state, memory = state
        logits, dec_state, self.last_weights = self.model.decoder_step(ids, dec_state, memory)
        return logits, (dec_state, memory)

    @staticmethod
    def select_state(state: tuple[State, Memory], index: np.ndarray) -> tuple[State, Memory]:
        dec_state, memory = state
        return [tuple(s[index] for s in layer) for layer in dec_state], memory.take(index)


__all__ = ["Memory", "Seq2Seq", "Seq2SeqStepper", "source_mask"]
