"""Output heads on top of a recurrent stack: per-step softmax (lm), dense softmax (classify), linear
regression (forecast), each with its loss and the gradient it sends back into the stack.

Heads are stateless: parameters live in the model's flat dict under a prefix (``out.`` for the
language model, ``head.`` for the others) and are passed to every call.  Every computation takes
its dtype from the parameters, so the same code runs in float32, float64 and (for the gradient
checks) extended precision.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from framework.errors import ConfigError, DataError

REDUCTIONS = ("mean", "sum")


class HeadResult(NamedTuple):
    """What the classify and forecast heads return.

    ``loss`` is the reduced loss whose gradients are in ``grads``/``dfeats``: ``total / count``
    for reduction "mean" (0 when ``count`` is 0), ``total`` for "sum".  ``total`` and ``count``
    add up exactly over evaluation batches: the weighted negative log-likelihood and the weight
    sum (classify), the squared error and the number of predicted values (forecast).
    """

    loss: float
    total: float
    count: float
    output: np.ndarray  # classify: probabilities (B, C); forecast: predictions (B, horizon, D)
    grads: dict[str, np.ndarray]
    dfeats: np.ndarray | None


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"train.loss reduction must be 'mean' or 'sum', got {reduction!r}")


def dense_init(rng: Any, fan_in: int, fan_out: int, init: str) -> np.ndarray:
    """(fan_in, fan_out) output weights in float64: the course's ``randn(out, in) * 0.01``
    transposed, or Glorot uniform.  One draw call either way."""
    if init == "course":
        return (rng.standard_normal((fan_out, fan_in)) * 0.01).T
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def _accumulator(dtype: np.dtype) -> np.dtype:
    """float64 for float32/float64 arrays, the array's own type when it is wider."""
    return np.result_type(dtype, np.float64)


class _Dense:
    """A (F, K) weight matrix and (K,) bias under ``prefix``: the shared part of the heads."""

    def __init__(self, in_features: int, out_features: int, init: str, prefix: str) -> None:
        if int(in_features) < 1 or int(out_features) < 1:
            raise ConfigError(
                f"a head needs in_features and out_features >= 1, got {in_features}, "
                f"{out_features}"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.init = init
        self.prefix = prefix
        self.keys = (f"{prefix}W", f"{prefix}b")  # parameter names of the weight and the bias

    def init_params(self, rng: Any, dtype: Any) -> dict[str, np.ndarray]:
        """The weight matrix (one draw), then a zero bias."""
        W = dense_init(rng, self.in_features, self.out_features, self.init)
        kW, kb = self.keys
        return {
            kW: np.ascontiguousarray(W, dtype=dtype),
            kb: np.zeros(self.out_features, dtype=dtype),
        }

    def affine(self, params: dict[str, np.ndarray], feats: np.ndarray) -> np.ndarray:
        kW, kb = self.keys
        out = np.matmul(feats, params[kW])
        out += params[kb]
        return out

    def backward(
        self, params: dict[str, np.ndarray], feats: np.ndarray, dout: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        kW, kb = self.keys
        grads = {kW: np.matmul(feats.T, dout), kb: dout.sum(axis=0)}
        return grads, np.matmul(dout, params[kW].T)

    def check_feats(self, params: dict[str, np.ndarray], feats: Any) -> np.ndarray:
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[1] != self.in_features:
            raise DataError(
                f"head features must have shape (batch, {self.in_features}), got {feats.shape}"
            )
        return feats.astype(params[self.keys[0]].dtype, copy=False)


# --------------------------------------------------------------------------- softmax over tokens
def softmax_xent(logits: np.ndarray, targets: np.ndarray) -> tuple[float, int, np.ndarray]:
    """Loss sum over valid targets, their count, and d(loss_sum)/d(logits) (in place of
    ``logits`` (N, V)).  Ignored rows (target -1) get zero gradient."""
    logits -= logits.max(axis=1, keepdims=True)
    valid = targets >= 0
    rows = np.flatnonzero(valid)
    cols = targets[rows]
    picked = logits[rows, cols]
    probs = np.exp(logits, out=logits)
    sums = probs.sum(axis=1)
    # The scalar loss is accumulated in float64 without float64 array temporaries.
    loss_sum = float(np.log(sums[rows]).sum(dtype=np.float64) - picked.sum(dtype=np.float64))
    probs /= sums[:, None]
    probs[rows, cols] -= 1
    if rows.size != targets.size:
        probs[~valid] = 0
    return loss_sum, int(rows.size), probs


class LMHead:
    """Softmax over the vocabulary at every step: one (T*B, H) @ (H, V) matmul over all
    positions, row-max-stabilised cross-entropy, target -1 ignored.  Parameters ``out.W``
    (H, V) and ``out.b`` (V,)."""

    def __init__(self, hidden_size: int, vocab_size: int, init: str = "xavier",
                 prefix: str = "out.") -> None:
        self.dense = _Dense(hidden_size, vocab_size, init, prefix)
        self.hidden_size = int(hidden_size)
        self.vocab_size = int(vocab_size)

    def init_params(self, rng: Any, dtype: Any) -> dict[str, np.ndarray]:
        """The course's Wya (V, H) drawn and transposed, or Glorot uniform (H, V); zero bias."""
        return self.dense.init_params(rng, dtype)

    def logits(self, params: dict[str, np.ndarray], top: np.ndarray) -> np.ndarray:
        """(T*B, V) logits of the top hidden states ``top`` (T, B, H)."""
        T, B, H = top.shape
        return self.dense.affine(params, top.reshape(T * B, H))

    def loss(
        self, params: dict[str, np.ndarray], top: np.ndarray, targets: np.ndarray
    ) -> tuple[float, int]:
        """(summed cross-entropy over non-ignored targets, their count)."""
        loss_sum, n_tokens, _ = softmax_xent(self.logits(params, top), targets.reshape(-1))
        return loss_sum, n_tokens

    def loss_and_grads(
        self,
        params: dict[str, np.ndarray],
        top: np.ndarray,
        targets: np.ndarray,
        reduction: str = "mean",
    ) -> tuple[float, int, dict[str, np.ndarray], np.ndarray]:
        """(loss_sum, n_tokens, head grads, d loss / d top (T, B, H)); the gradients are of
        loss_sum / n_tokens ("mean") or loss_sum ("sum")."""
        T, B, H = top.shape
        loss_sum, n_tokens, dlogits = softmax_xent(self.logits(params, top), targets.reshape(-1))
        if reduction == "mean" and n_tokens > 0:
            dlogits *= dlogits.dtype.type(1.0 / n_tokens)
        grads, dtop = self.dense.backward(params, top.reshape(T * B, H), dlogits)
        return loss_sum, n_tokens, grads, dtop.reshape(T, B, H)


# --------------------------------------------------------------------------- classification
def check_labels(labels: Any, batch: int, num_classes: int) -> np.ndarray:
    """Class ids (B,) in [0, num_classes) or -1 (ignored row)."""
    arr = np.asarray(labels)
    if arr.shape != (batch,) or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"labels must be a 1-D integer array of {batch} class ids, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    if arr.size and (arr.min() < -1 or arr.max() >= num_classes):
        raise DataError(
            f"labels contain ids outside [0, {num_classes - 1}] (min {arr.min()}, max "
            f"{arr.max()}); -1 marks an ignored row"
        )
    return arr.astype(np.intp, copy=False)


def check_class_weights(weights: Any, num_classes: int) -> np.ndarray | None:
    """None, or a float64 (C,) array of finite weights >= 0 with a positive sum."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (num_classes,):
        raise ConfigError(
            f"task.class_weights needs one weight per class ({num_classes}), got shape {w.shape}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ConfigError("task.class_weights must be finite, >= 0 and not all zero")
    return w


def balanced_class_weights(labels: Any, num_classes: int) -> np.ndarray:
    """n_samples / (n_classes * count_c) per class (scikit-learn's "balanced"), float64.

    Ignored labels (-1) are not counted.  A class without examples has no balanced weight, so
    that is a DataError naming the classes.
    """
    arr = np.asarray(labels).reshape(-1)
    arr = arr[arr >= 0]
    counts = np.bincount(arr, minlength=num_classes)[:num_classes]
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise DataError(
            f"class_weights=balanced needs an example of every class; none of class id(s) "
            f"{', '.join(map(str, empty.tolist()))} in the training labels"
        )
    return arr.size / (num_classes * counts.astype(np.float64))


class ClassifyHead:
    """Dense layer + softmax cross-entropy on one feature vector per sequence.

    Parameters ``head.W`` (F, C) and ``head.b`` (C,).  With class weights the loss is the weighted
    mean sum_i w[y_i] * nll_i / sum_i w[y_i] (PyTorch's ``CrossEntropyLoss(weight=w)``); rows
    with label -1 are ignored.
    """

    def __init__(self, in_features: int, num_classes: int, init: str = "xavier",
                 prefix: str = "head.") -> None:
        self.dense = _Dense(in_features, num_classes, init, prefix)
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)

    def init_params(self, rng: Any, dtype: Any) -> dict[str, np.ndarray]:
        return self.dense.init_params(rng, dtype)

    def probs(self, params: dict[str, np.ndarray], feats: np.ndarray) -> np.ndarray:
        """Softmax probabilities (B, C) in the parameters' dtype."""
        z = self.dense.affine(params, self.dense.check_feats(params, feats))
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def loss_and_grads(
        self,
        params: dict[str, np.ndarray],
        feats: np.ndarray,
        labels: Any,
        *,
        class_weights: Any = None,
        reduction: str = "mean",
        need_grads: bool = True,
    ) -> HeadResult:
        """Weighted cross-entropy of ``feats`` (B, F) against ``labels`` (B,)."""
        check_reduction(reduction)
        feats = self.dense.check_feats(params, feats)
        labels = check_labels(labels, feats.shape[0], self.num_classes)
        weights = check_class_weights(class_weights, self.num_classes)
        z = self.dense.affine(params, feats)
        z -= z.max(axis=1, keepdims=True)
        rows = np.flatnonzero(labels >= 0)
        cols = labels[rows]
        acc = _accumulator(z.dtype)
        lse = np.log(np.exp(z).sum(axis=1))
        nll = lse[rows] - z[rows, cols]  # (N,) per counted row
        dt = z.dtype.type
        w = None if weights is None else weights[cols].astype(z.dtype)
        if w is None:
            total = float(nll.sum(dtype=acc))
            count = float(rows.size)
        else:
            total = float((w * nll).sum(dtype=acc))
            count = float(w.sum(dtype=acc))
        probs = np.exp(z - lse[:, None])
        if reduction == "sum":
            loss = total
        else:
            loss = total / count if count > 0 else 0.0
        if not need_grads:
            return HeadResult(loss, total, count, probs, {}, None)
        dz = np.zeros_like(probs)
        dz[rows] = probs[rows]
        dz[rows, cols] -= 1
        if w is not None:
            dz[rows] *= w[:, None]
        if reduction == "mean" and count > 0:
            dz *= dt(1.0 / count)
        grads, dfeats = self.dense.backward(params, feats, dz)
        return HeadResult(loss, total, count, probs, grads, dfeats)


# --------------------------------------------------------------------------- forecasting
class ForecastHead:
    """Linear map from one feature vector per sequence to ``horizon * D`` real values, mean
    squared error.  Parameters ``head.W`` (F, horizon*D) and ``head.b`` (horizon*D,); the output
    is (B, horizon, D), step-major (value d of step k is column k*D + d)."""

    def __init__(self, in_features: int, horizon: int, output_size: int = 1,
                 init: str = "xavier", prefix: str = "head.") -> None:
        if int(horizon) < 1 or int(output_size) < 1:
            raise ConfigError(
                f"task.horizon and the output size must be >= 1, got {horizon}, {output_size}"
            )
        self.horizon = int(horizon)
        self.output_size = int(output_size)
        self.in_features = int(in_features)
        self.dense = _Dense(in_features, self.horizon * self.output_size, init, prefix)

    def init_params(self, rng: Any, dtype: Any) -> dict[str, np.ndarray]:
        return self.dense.init_params(rng, dtype)

    def predict(self, params: dict[str, np.ndarray], feats: np.ndarray) -> np.ndarray:
        """Predictions (B, horizon, D) in the parameters' dtype."""
        feats = self.dense.check_feats(params, feats)
        return self.dense.affine(params, feats).reshape(-1, self.horizon, self.output_size)

    def check_targets(self, targets: Any, batch: int) -> np.ndarray:
        """Targets as (B, horizon, D); (B, horizon) is accepted when D is 1."""
        t = np.asarray(targets)
        shape = (batch, self.horizon, self.output_size)
        if t.shape == shape[:2] and self.output_size == 1:
            t = t.reshape(shape)
        if t.shape != shape or not np.issubdtype(t.dtype, np.number):
            raise DataError(f"forecast targets must have shape {shape}, got {t.shape}")
        if not np.all(np.isfinite(t)):
            raise DataError("forecast targets contain NaN or Inf; fill the missing values first")
        return t

    def loss_and_grads(
        self,
        params: dict[str, np.ndarray],
        feats: np.ndarray,
        targets: Any,
        *,
        reduction: str = "mean",
        need_grads: bool = True,
    ) -> HeadResult:
        """Mean (or summed) squared error of the predictions for ``feats`` (B, F)."""
        check_reduction(reduction)
        feats = self.dense.check_feats(params, feats)
        B = feats.shape[0]
        targets = self.check_targets(targets, B).reshape(B, -1)
        pred = self.dense.affine(params, feats)
        diff = pred - targets.astype(pred.dtype, copy=False)
        total = float(np.square(diff).sum(dtype=_accumulator(diff.dtype)))
        count = float(diff.size)
        loss = total / count if reduction == "mean" else total
        output = pred.reshape(B, self.horizon, self.output_size)
        if not need_grads:
            return HeadResult(loss, total, count, output, {}, None)
        scale = 2.0 / count if reduction == "mean" else 2.0
        dpred = diff * diff.dtype.type(scale)
        grads, dfeats = self.dense.backward(params, feats, dpred)
        return HeadResult(loss, total, count, output, grads, dfeats)


__all__ = [
    "REDUCTIONS",
    "ClassifyHead",
    "ForecastHead",
    "HeadResult",
    "LMHead",
    "balanced_class_weights",
    "check_class_weights",
    "check_labels",
    "check_reduction",
    "dense_init",
    "softmax_xent",
]
