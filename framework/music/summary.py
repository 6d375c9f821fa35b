"""What a decoded piece contains, in numbers: size, range, rhythm, voice crossings, final chord."""

from __future__ import annotations

from collections import Counter
from typing import Any

from framework.music.encoding import Piece, pitch_token

_PC = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def analyse(piece: Piece) -> dict[str, Any]:
    """Counts that say what a sample sounds like without listening to it.

    ``durations``: share of notes per length in quarter notes; ``crossings``: steps at which a
    lower voice sounds above the voice over it; ``final_chord``: pitch classes sounding at the
    last onset step (a cadence on C shows as ``["C", "E", "G"]`` or ``["C", "D#", "G"]``).
    """
    res, V = piece.options.resolution, piece.options.voices
    notes = piece.notes
    durations = Counter((n.end - n.start) / res for n in notes)
    total = max(len(notes), 1)
    ranges = {}
    for v in range(V):
        pitches = [n.pitch for n in piece.voice(v)]
        ranges[v] = (pitch_token(min(pitches)), pitch_token(max(pitches))) if pitches else None
    grid: list[list[int | None]] = [[None] * V for _ in range(piece.n_steps)]
    for n in notes:
        for t in range(n.start, n.end):
            grid[t][n.voice] = n.pitch
    crossings = sum(1 for row in grid for v in range(V - 1)
                    if row[v] is not None and row[v + 1] is not None and row[v + 1] > row[v])
    last_onset = max((n.start for n in notes), default=None)
    final = sorted({_PC[p % 12] for p in grid[last_onset] if p is not None},
                   key=_PC.index) if last_onset is not None else []
    silent = sum(1 for row in grid if all(p is None for p in row))
    return {
        "notes": len(notes),
        "steps": piece.n_steps,
        "quarters": piece.n_steps / res,
        "bars": len(piece.bars),
        "repairs": piece.repairs,
        "range": (pitch_token(min(n.pitch for n in notes)),
                  pitch_token(max(n.pitch for n in notes))) if notes else None,
        "voice_ranges": ranges,
        "durations": {d: c / total for d, c in sorted(durations.items())},
        "crossings": crossings,
        "silent_steps": silent,
        "final_chord": final,
    }


def describe(piece: Piece) -> str:
    """One line: length, notes, range, repairs."""
    a = analyse(piece)
    span = f"{a['range'][0]}-{a['range'][1]}" if a["range"] else "no notes"
    return (f"{a['quarters']:g} quarters, {a['bars']} bars, {a['notes']} notes, {span}, "
            f"{a['repairs']} repairs")


__all__ = ["analyse", "describe"]
