"""Sequence classifier and forecaster: a many-to-one encoder (optionally bidirectional) under a
dense softmax head or a linear regression head.

Parameter names: ``embedding.W`` when the model has an :class:`~framework.nn.embedding.Embedding`
(token ids are looked up in it and the encoder reads the vectors), ``layers.{i}.{W_x,W_h,b}`` (or
``fwd.layers.{i}.*`` and ``bwd.layers.{i}.*`` when bidirectional), then ``head.W`` and
``head.b``; :meth:`init_params` draws them in that order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.cell import Cell, as_dtype
from framework.nn.embedding import Embedding
from framework.nn.encoder import SequenceEncoder, check_inputs, check_lengths
from framework.nn.heads import ClassifyHead, ForecastHead, HeadResult
from framework.nn.models.shapes import head_shapes, stack_shapes
from framework.nn.stack import build_cell


class _ManyToOne:
    """Shared part: the cell, the encoder, the flat parameter dict, feature extraction."""

    head: ClassifyHead | ForecastHead

    def __init__(
        self,
        cell: str | Cell,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        init: str,
        dtype: str,
        ids: bool,
        bidirectional: bool,
        cell_options: dict | None,
        embedding: Embedding | None = None,
    ) -> None:
        if int(input_size) < 1:
            raise ConfigError(f"the input size (vocabulary or features) must be >= 1, got "
                              f"{input_size}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.init = init
        self.dtype = as_dtype(dtype)
        self.ids = bool(ids)
        self.bidirectional = bool(bidirectional)
        self.cell = build_cell(cell, self.hidden_size, init, cell_options)
        self.cell_name = self.cell.name
        self.embedding = embedding
        if embedding is not None and (not self.ids or embedding.vocab_size != self.input_size):
            raise ConfigError(f"an embedding reads token ids of a vocabulary of its "
                              f"{embedding.vocab_size} rows; the model reads "
                              f"{'ids' if self.ids else 'dense inputs'} of size {self.input_size}")
        # With an embedding the encoder reads its (T, B, E) vectors, not the ids.
        self.encoder = SequenceEncoder(
            self.cell, self.input_size if embedding is None else embedding.size,
            self.num_layers, self.dropout, ids=self.ids and embedding is None,
            bidirectional=self.bidirectional)
        self.params: dict[str, np.ndarray] = {}

    def init_params(self, rng: Any, *, vectors: np.ndarray | None = None,
                    found: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The embedding table if any (``vectors``/``found``: pretrained rows, see
        :meth:`Embedding.init_params`), the encoder stacks (forward, then backward), then the
        head's weight matrix."""
        params: dict[str, np.ndarray] = {}
        if self.embedding is not None:
            params.update(self.embedding.init_params(rng, self.dtype, vectors=vectors,
                                                     found=found))
        params.update(self.encoder.init_params(rng, self.dtype))
        params.update(self.head.init_params(rng, self.dtype))
        self.params = params
        return params

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of :meth:`init_params`'s arrays, in its order, unallocated."""
        table = self.embedding.param_shapes() if self.embedding is not None else {}
        return {**table, **stack_shapes(self.encoder.stacks), **head_shapes(self.head)}

    def _encode(
        self, inputs: Any, lengths: Any, dropout_rng: Any
    ) -> tuple[np.ndarray, Any]:
        if not self.params:
            raise ConfigError("the model has no parameters yet; call init_params(rng) first")
        x = check_inputs(inputs, self.ids, self.input_size)
        lengths = check_lengths(lengths, x.shape[0], x.shape[1])
        if self.embedding is None:
            return self.encoder.forward(self.params, x, lengths, dropout_rng)
        vectors, ids = self.embedding.forward(self.params, x)
        feats, tape = self.encoder.forward(self.params, vectors, lengths, dropout_rng)
        return feats, (tape, ids)

    def features(self, inputs: Any, lengths: Any = None) -> np.ndarray:
        """Evaluation features (B, H or 2H): the last valid top hidden state(s)."""
        return self._encode(inputs, lengths, None)[0]

    def _finish(self, out: HeadResult, tape: Any) -> HeadResult:
        """Backpropagate the head's feature gradient; all gradients in parameter order (a frozen
        embedding has none)."""
        if self.embedding is None:
            grads, _ = self.encoder.backward(self.params, tape, out.dfeats)
        else:
            tape, ids = tape
            grads, dx = self.encoder.backward(self.params, tape, out.dfeats)
            grads.update(self.embedding.backward(self.params, dx, ids))
        grads.update(out.grads)
        return out._replace(grads={k: grads[k] for k in self.params if k in grads})


class SequenceClassifier(_ManyToOne):
    """Many-to-one classifier: the last valid hidden state of each sequence into a dense softmax
    over ``num_classes`` classes."""

    def __init__(
        self,
        cell: str | Cell,
        input_size: int,
        num_classes: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        init: str = "xavier",
        dtype: str = "float32",
        *,
        ids: bool = True,
        bidirectional: bool = False,
        cell_options: dict | None = None,
        embedding: Embedding | None = None,
    ) -> None:
        super().__init__(cell, input_size, hidden_size, num_layers, dropout, init, dtype, ids,
                         bidirectional, cell_options, embedding)
        self.num_classes = int(num_classes)
        self.head = ClassifyHead(self.encoder.feature_size, self.num_classes, init)

    def loss_and_grads(
        self,
        inputs: Any,
        lengths: Any,
        labels: Any,
        *,
        class_weights: Any = None,
        reduction: str = "mean",
        dropout_rng: Any = None,
    ) -> HeadResult:
        """Weighted cross-entropy of a right-padded batch (inputs (T, B) ids or (T, B, D),
        lengths (B,), labels (B,) with -1 ignored), probabilities and all gradients."""
        feats, tape = self._encode(inputs, lengths, dropout_rng)
        out = self.head.loss_and_grads(self.params, feats, labels, class_weights=class_weights,
                                       reduction=reduction)
        return self._finish(out, tape)

    def evaluate(
        self, inputs: Any, lengths: Any, labels: Any, *, class_weights: Any = None
    ) -> HeadResult:
        """Evaluation loss and probabilities (no dropout, no gradients)."""
        feats, _ = self._encode(inputs, lengths, None)
        return self.head.loss_and_grads(self.params, feats, labels, class_weights=class_weights,
                                        need_grads=False)

    def predict_proba(self, inputs: Any, lengths: Any = None) -> np.ndarray:
        """Class probabilities (B, C) in float64."""
        return self.head.probs(self.params, self.features(inputs, lengths)).astype(np.float64)


class SequenceForecaster(_ManyToOne):
    """Many-to-one regressor: the last hidden state of a window into ``horizon * output_size``
    real values, mean squared error."""

    def __init__(
        self,
        cell: str | Cell,
        input_size: int,
        horizon: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        init: str = "xavier",
        dtype: str = "float32",
        *,
        output_size: int | None = None,
        ids: bool = False,
        bidirectional: bool = False,
        cell_options: dict | None = None,
    ) -> None:
        super().__init__(cell, input_size, hidden_size, num_layers, dropout, init, dtype, ids,
                         bidirectional, cell_options)
        if output_size is None:
            if ids:
                raise ConfigError("a forecaster over token ids needs an explicit output_size")
            output_size = self.input_size
        self.horizon = int(horizon)
        self.output_size = int(output_size)
        self.head = ForecastHead(self.encoder.feature_size, self.horizon, self.output_size, init)

    def loss_and_grads(
        self,
        inputs: Any,
        lengths: Any,
        targets: Any,
        *,
        reduction: str = "mean",
        dropout_rng: Any = None,
    ) -> HeadResult:
        """Mean squared error of the forecasts for a batch of windows (inputs (T, B, D),
        lengths (B,) or None, targets (B, horizon, output_size)), predictions and gradients."""
        feats, tape = self._encode(inputs, lengths, dropout_rng)
        out = self.head.loss_and_grads(self.params, feats, targets, reduction=reduction)
        return self._finish(out, tape)

    def evaluate(self, inputs: Any, lengths: Any, targets: Any) -> HeadResult:
        """Evaluation loss and predictions (no dropout, no gradients)."""
        feats, _ = self._encode(inputs, lengths, None)
        return self.head.loss_and_grads(self.params, feats, targets, need_grads=False)

    def predict(self, inputs: Any, lengths: Any = None) -> np.ndarray:
        """Forecasts (B, horizon, output_size) in float64."""
        return self.head.predict(self.params, self.features(inputs, lengths)).astype(np.float64)

    def recursive_forecast(self, history: Any, steps: int, window: int) -> np.ndarray:
        """``steps`` values (steps, D) after ``history`` (N, D) or (N,), each window of the last
        ``window`` values predicting the next ``horizon``, which are appended and read back."""
        if self.ids or self.output_size != self.input_size:
            raise ConfigError("a recursive forecast needs dense inputs and output_size equal "
                              "to the input size")
        D = self.input_size
        hist = np.asarray(history, dtype=np.float64)
        hist = hist.reshape(-1, D) if hist.ndim == 1 and D == 1 else hist
        if hist.ndim != 2 or hist.shape[1] != D or hist.shape[0] < int(window) or window < 1:
            raise DataError(f"a recursive forecast needs a history of shape (>= {window}, {D}), "
                            f"got {hist.shape}")
        buf = [hist[-int(window):]]
        made = 0
        while made < steps:
            recent = np.concatenate(buf)[-int(window):]
            pred = self.predict(recent[:, None, :])[0][: steps - made]
            buf.append(pred)
            made += len(pred)
        return np.concatenate(buf[1:]) if steps > 0 else np.zeros((0, D))


__all__ = ["SequenceClassifier", "SequenceForecaster"]
