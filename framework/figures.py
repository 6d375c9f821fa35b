"""Matplotlib figures without pyplot: a Figure on its own Agg canvas, and saving one as a PNG.

A Figure made without pyplot is not registered in pyplot's global state (nothing to close, safe in
threads). Its Agg canvas is attached explicitly, so it draws headless (servers, CI) without
switching the process-wide backend, which would disturb a notebook that imports rnnlab. Every
picture rnnlab draws (loss curves, confusion matrices, forecasts, piano rolls, the vanishing-
gradient study) starts here.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def agg_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """An empty ``width`` x ``height`` inch figure with an Agg canvas of its own."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG (creating parent directories); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


__all__ = ["agg_figure", "save_figure"]
