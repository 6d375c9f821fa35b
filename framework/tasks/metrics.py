"""Task metrics and their figures: accuracy, macro-F1, confusion matrix, per-class table; RMSE/MAE;
confusion-matrix and forecast PNGs (matplotlib Agg, no pyplot global state)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure

from framework.figures import agg_figure, save_figure

# ------------------------------------------------------------------------------ classification


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"accuracy needs equal, non-empty label arrays, got {y_true.shape} and "
                         f"{y_pred.shape}")
    return float(np.mean(y_true == y_pred))


def top_classes(probs: np.ndarray, classes: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable (class, probability) of one row of probabilities, best first (the
    earlier class first on a tie)."""
    order = np.argsort(-np.asarray(probs), kind="stable")[: min(k, len(classes))]
    return [(classes[i], float(probs[i])) for i in order]


# The confusion matrix is (C, C): drawn (and allocated) only up to this many classes; the
# per-class metrics need O(C) memory whatever C is.
MAX_CONFUSION_CLASSES = 100


def _labels(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"label arrays differ in shape: {y_true.shape} and {y_pred.shape}")
    for y in (y_true, y_pred):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"labels must be in [0, {n_classes}), got {y.min()}..{y.max()}")
    return y_true, y_pred


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    y_true, y_pred = _labels(y_true, y_pred, n_classes)
    return np.bincount(y_true * n_classes + y_pred,
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


class ClassCounts(NamedTuple):
    """Per class (C,) int64: true positives, predictions, true labels (the confusion matrix's
    diagonal, column sums and row sums) in O(C) memory."""

    hits: np.ndarray
    predicted: np.ndarray
    support: np.ndarray


def class_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> ClassCounts:
    y_true, y_pred = _labels(y_true, y_pred, n_classes)
    hits = y_true[y_true == y_pred]
    return ClassCounts(*(np.bincount(y, minlength=n_classes) for y in (hits, y_pred, y_true)))


def _counts(cm: np.ndarray | ClassCounts) -> ClassCounts:
    if isinstance(cm, ClassCounts):
        return cm
    cm = np.asarray(cm)
    return ClassCounts(np.diag(cm), cm.sum(axis=0), cm.sum(axis=1))


def per_class(cm: np.ndarray | ClassCounts) -> dict[str, np.ndarray]:
    """Precision, recall, F1 (0 where undefined) and support of each class, from a confusion
    matrix or :func:`class_counts`."""
    tp, predicted, support = (np.asarray(a, dtype=np.float64) for a in _counts(cm))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1,
            "support": support.astype(np.int64), "predicted": predicted.astype(np.int64)}


def macro_f1_from_confusion(cm: np.ndarray | ClassCounts) -> float:
    """Unweighted mean F1 over the classes that occur as a true or a predicted label (the
    classes with neither carry no information and are left out, as scikit-learn does); ``cm``
    is a confusion matrix or :func:`class_counts`."""
    stats = per_class(cm)
    present = (stats["support"] > 0) | (stats["predicted"] > 0)
    return float(stats["f1"][present].mean()) if present.any() else 0.0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    return macro_f1_from_confusion(class_counts(y_true, y_pred, n_classes))


def classification_table(cm: np.ndarray | ClassCounts, classes: Sequence[str]) -> str:
    """A plain-text per-class table (precision, recall, F1, support) with macro and overall rows;
    ``cm`` is a confusion matrix or :func:`class_counts`."""
    stats = per_class(cm)
    width = max([len(c) for c in classes] + [len("accuracy")])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for i, name in enumerate(classes):
        lines.append(f"{name:<{width}}  {stats['precision'][i]:9.3f}  {stats['recall'][i]:6.3f}"
                     f"  {stats['f1'][i]:5.3f}  {stats['support'][i]:7d}")
    total = int(stats["support"].sum())
    acc = float(_counts(cm).hits.sum() / total) if total else 0.0
    lines.append(f"{'macro F1':<{width}}  {'':9}  {'':6}  {macro_f1_from_confusion(cm):5.3f}"
                 f"  {total:7d}")
    lines.append(f"{'accuracy':<{width}}  {'':9}  {'':6}  {acc:5.3f}  {total:7d}")
    return "\n".join(lines) + "\n"


def confusion_figure(cm: np.ndarray, classes: Sequence[str], title: str | None = None) -> Figure:
    """Rows normalised to the recall of each true class (colour), raw counts written in cells."""
    cm = np.asarray(cm)
    C = len(classes)
    support = cm.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(support > 0, cm / support, 0.0)
    size = max(4.0, 0.42 * C + 2.0)
    fig = agg_figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(C), labels=list(classes), rotation=90)
    ax.set_yticks(range(C), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fontsize = 8 if C <= 12 else 6
    for i in range(C):
        for j in range(C):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=fontsize,
                        color="white" if share[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_confusion_png(cm: np.ndarray, classes: Sequence[str], path: str | os.PathLike[str],
                       title: str | None = None) -> Path:
    return save_figure(confusion_figure(cm, classes, title), path)


# ------------------------------------------------------------------------------ forecasting


def _errors(y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"truth and forecast differ in shape: {y_true.shape} and {y_pred.shape}")
    err = y_pred - y_true
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        err = err[np.broadcast_to(m.reshape(m.shape + (1,) * (err.ndim - m.ndim)), err.shape)]
    if err.size == 0:
        raise ValueError("no values to compare")
    return err.ravel()


def rmse(y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root mean squared error over all entries (where ``mask``, if given, is True)."""
    return float(np.sqrt(np.mean(_errors(y_true, y_pred, mask) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error over all entries (where ``mask``, if given, is True)."""
    return float(np.mean(np.abs(_errors(y_true, y_pred, mask))))


def forecast_figure(times: np.ndarray | None, values: np.ndarray, n_train: int,
                    forecasts: Mapping[str, np.ndarray], *, history: int | None = None,
                    ylabel: str = "value", title: str | None = None) -> Figure:
    """The history (training part), the truth (validation part) and forecasts of it.

    ``values`` (N,) or (N, 1) in original units; ``forecasts`` maps a label (e.g. "one-step",
    "recursive", "AR(9)") to (N - n_train,) values aligned with the validation part.
    ``history`` limits the drawn history to its last that many points.
    """
    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)[:, 0]
    x: Any = np.arange(len(v)) if times is None else np.asarray(times)
    start = 0 if history is None else max(0, n_train - history)
    fig = agg_figure(9, 4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x[start : n_train + 1], v[start : n_train + 1], color="0.35", linewidth=1.0,
            label="history")
    ax.plot(x[n_train:], v[n_train:], color="black", linewidth=1.6, label="truth")
    for label, f in forecasts.items():
        f = np.asarray(f, dtype=np.float64).reshape(len(f), -1)[:, 0]
        ax.plot(x[n_train : n_train + len(f)], f, linewidth=1.2, label=label)
    ax.axvline(x[n_train], color="0.6", linestyle=":", linewidth=1.0)
    ax.set_xlabel("time" if times is not None else "index")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def save_forecast_png(times: np.ndarray | None, values: np.ndarray, n_train: int,
                      forecasts: Mapping[str, np.ndarray], path: str | os.PathLike[str],
                      **options: Any) -> Path:
    return save_figure(forecast_figure(times, values, n_train, forecasts, **options), path)


__all__ = ["accuracy", "classification_table", "confusion_figure", "confusion_matrix",
           "forecast_figure", "macro_f1", "macro_f1_from_confusion", "mae", "per_class", "rmse",
           "save_confusion_png", "save_forecast_png", "top_classes"]
