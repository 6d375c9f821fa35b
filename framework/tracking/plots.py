"""Loss-curve figures (matplotlib, Agg backend, no pyplot global state)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from framework.figures import agg_figure, save_figure

# history key -> (label, style); other keys are drawn too, with default styles.
_STYLES: dict[str, tuple[str, dict]] = {
    "train_loss": ("train", {"alpha": 0.35, "linewidth": 0.8}),
    "smooth_loss": ("train (smoothed)", {"linewidth": 1.6}),
    "val_loss": ("validation", {"linewidth": 1.6, "marker": "o", "markersize": 3}),
}


def loss_curve_figure(history: Mapping[str, Sequence[tuple[int, float]]],
                      title: str | None = None) -> Figure:
    """Loss curves (nats/char) against the step, one line per history entry.

    ``history`` maps a name (``train_loss``, ``smooth_loss``, ``val_loss``, …) to ``(step, value)``
    pairs; non-finite values are skipped so a diverged run still plots.
    """
    fig = agg_figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    ordered = [k for k in _STYLES if k in history] + [k for k in history if k not in _STYLES]
    drawn = 0
    for key in ordered:
        points = [(int(s), float(v)) for s, v in history[key] if math.isfinite(float(v))]
        if not points:
            continue
        label, style = _STYLES.get(key, (key, {}))
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, label=label, **style)
        drawn += 1
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/char)")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend()
    fig.tight_layout()
    return fig


def save_loss_curve(history: Mapping[str, Sequence[tuple[int, float]]],
                    path: str | os.PathLike[str]) -> Path:
    return save_figure(loss_curve_figure(history), path)


__all__ = ["loss_curve_figure", "save_loss_curve"]
