"""Training samples as music: generated token texts -> MIDI files and piano-roll PNGs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from framework.music.encoding import EncodingOptions, split_tokens, tokens_to_piece
from framework.music.midi import DEFAULT_TEMPO, write_midi
from framework.music.pianoroll import save_piano_roll
from framework.music.summary import describe


def render_samples(texts: Sequence[str], folder: str | os.PathLike[str],
                   options: EncodingOptions, *, tempo: int = DEFAULT_TEMPO,
                   title: str = "") -> list[str]:
    """Write ``sample_<i>.mid`` and ``sample_<i>.png`` per text into ``folder``; returns one
    console line per sample."""
    folder = Path(folder)
    lines = []
    for i, text in enumerate(texts):
        piece = tokens_to_piece(split_tokens(text), options)
        midi = write_midi(piece, folder / f"sample_{i}.mid", tempo=tempo)
        save_piano_roll(piece, folder / f"sample_{i}.png",
                        title=f"{title} sample {i}".strip())
        lines.append(f"  {midi.name}: {describe(piece)}")
    return lines


__all__ = ["render_samples"]
