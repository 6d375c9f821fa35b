"""Piano-roll pictures of a decoded piece (matplotlib, Agg backend, no pyplot global state)."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from framework.figures import agg_figure, save_figure
from framework.music.encoding import Piece, pitch_token

SATB = ("soprano", "alto", "tenor", "bass")
# One colour per voice (soprano, alto, tenor, bass, then more), readable on white.
_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#7f7f7f")


def piano_roll_figure(piece: Piece, title: str | None = None) -> Figure:
    """Notes as horizontal bars (time in quarter notes, MIDI pitch), bar lines dotted."""
    res = piece.options.resolution
    width = min(16.0, max(6.0, piece.n_steps / res / 4.0))
    fig = agg_figure(width, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for v in range(piece.options.voices):
        bars = [(n.start / res, (n.end - n.start) / res) for n in piece.voice(v)]
        pitches = [n.pitch for n in piece.voice(v)]
        colour = _COLOURS[v % len(_COLOURS)]
        for (x, w), p in zip(bars, pitches, strict=True):
            ax.broken_barh([(x, w)], (p - 0.4, 0.8), facecolors=colour, edgecolor="black",
                           linewidth=0.3)
        label = SATB[v] if piece.options.voices == len(SATB) else f"voice {v + 1}"
        ax.plot([], [], color=colour, linewidth=6, label=label)
    for b in piece.bars:
        ax.axvline(b / res, color="grey", linestyle=":", linewidth=0.6)
    if piece.notes:
        lo = min(n.pitch for n in piece.notes)
        hi = max(n.pitch for n in piece.notes)
        cs = [p for p in range(lo - lo % 12, hi + 1, 12) if p >= lo]
        # Every C, plus the lowest and highest note unless a C label is too close to them.
        ticks = sorted(set(cs) | {e for e in (lo, hi) if all(abs(e - c) > 2 for c in cs)})
        ax.set_yticks(ticks)
        ax.set_yticklabels([pitch_token(p) for p in ticks])
        ax.set_ylim(lo - 2, hi + 2)
    ax.set_xlim(0, max(piece.n_steps / res, 1.0))
    ax.set_xlabel("quarter notes")
    ax.set_ylabel("pitch")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def save_piano_roll(piece: Piece, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write the piano roll of ``piece`` as a PNG; returns the path."""
    return save_figure(piano_roll_figure(piece, title), path)


__all__ = ["piano_roll_figure", "save_piano_roll"]
