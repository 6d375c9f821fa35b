"""MIDI files: a decoded piece -> a playable .mid (one track per voice), and a .mid -> a score.

Both go through music21.  The file has one part per voice, top voice first, each on its own
channel with a church-organ program (held notes stay audible), a tempo mark and a time signature
of ``steps_per_bar / resolution`` quarter notes per bar.  A step lasts ``1 / resolution`` quarter
notes; rests are silence (MIDI has no rest events).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from framework.errors import DataError
from framework.music import require_music21
from framework.music.encoding import Piece

DEFAULT_TEMPO = 80  # quarter notes per minute: a chorale's pace
ORGAN_PROGRAM = 19  # General MIDI "Church Organ" (0-based program number)


def piece_to_score(piece: Piece, *, tempo: int = DEFAULT_TEMPO) -> Any:
    """A music21 Score with one Part per voice, notes at their grid positions."""
    require_music21("writing MIDI")
    from music21 import instrument, meter, note, stream
    from music21 import tempo as m21tempo

    res = piece.options.resolution
    score = stream.Score()
    beats = Fraction(piece.steps_per_bar, res)
    numerator = beats.numerator if beats.denominator == 1 else piece.steps_per_bar
    denominator = 4 if beats.denominator == 1 else 4 * res
    for v in range(piece.options.voices):
        part = stream.Part(id=f"voice{v}")
        inst = instrument.Instrument()
        inst.midiProgram = ORGAN_PROGRAM
        inst.partName = f"voice {v + 1}"
        part.insert(0, inst)
        if v == 0:
            part.insert(0, m21tempo.MetronomeMark(number=tempo))
        part.insert(0, meter.TimeSignature(f"{numerator}/{denominator}"))
        for n in piece.voice(v):
            m21note = note.Note(n.pitch)
            m21note.quarterLength = Fraction(n.end - n.start, res)
            part.insert(Fraction(n.start, res), m21note)
        score.insert(0, part)
    return score


def write_midi(piece: Piece, path: str | os.PathLike[str], *,
               tempo: int = DEFAULT_TEMPO) -> Path:
    """Write ``piece`` as a Standard MIDI File; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    score = piece_to_score(piece, tempo=tempo)
    from music21 import midi as m21midi

    mf = m21midi.translate.music21ObjectToMidiFile(score)
    try:
        mf.open(str(path), "wb")
        mf.write()
    finally:
        mf.close()
    return path


def read_midi(path: str | os.PathLike[str]) -> Any:
    """A music21 Score of a MIDI file (parsed from the file itself, never from a pickle cache)."""
    require_music21("reading MIDI")
    from music21 import converter

    path = Path(path)
    try:
        return converter.parse(str(path), format="midi", forceSource=True)
    except Exception as exc:  # music21 raises many kinds on a broken file
        raise DataError(f"{path} is not a readable MIDI file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None


def midi_notes(path: str | os.PathLike[str]) -> list[list[tuple[float, float, int]]]:
    """Per part of a MIDI file, its notes as ``(onset, end, MIDI pitch)`` in quarter notes."""
    score = read_midi(path)
    parts = []
    for part in score.parts:
        notes = []
        # music21 splits notes at its bar lines into tied pieces; a MIDI note is one note.
        for el in part.stripTies().flatten().notes:
            start = float(el.offset)
            for p in el.pitches:
                notes.append((start, start + float(el.quarterLength), int(p.midi)))
        parts.append(sorted(notes))
    return parts


__all__ = ["DEFAULT_TEMPO", "midi_notes", "piece_to_score", "read_midi", "write_midi"]
