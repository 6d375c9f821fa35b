"""The event encoding: a score of V voices <-> a sequence of string tokens, on a fixed time grid.

The encoding
------------
Time is cut into steps of ``1 / resolution`` quarter notes (``resolution=4``: sixteenths, the
default; ``2``: eighths).  Each step is written as V tokens, one per voice, top voice first
(soprano, alto, tenor, bass for a chorale)::

    <pitch>   a note starts in this voice at this step: a MIDI pitch spelled with sharps,
              scientific octave ("C4" = MIDI 60, "F#3", "A#2")
    _         hold: the note sounding in this voice goes on through this step
    R         rest: this voice is silent during this step

A bar token ``|`` stands before the first step of every bar (so a piece starts with ``|``), and
the end token ``<end>`` follows the last step; the corpus leaves ``<end>`` to the line feed,
which appends it to every example.  One bar of four voices in 4/4 at sixteenths is 1 + 16 x 4 =
65 tokens.  A repeated note is a new pitch token, a held one is ``_``: ties are merged first.

Reading a score into steps: every note's onset and end are rounded to the nearest step; a note
shorter than one step can vanish, and a note that starts while another of the same voice sounds
cuts that one short.  A chord inside one voice keeps its highest note in the upper half of the
voices and its lowest in the lower half.  With ``transpose`` (the default) the piece is shifted by
-6..+5 semitones so that its tonic is C (C major or C minor); the key is the one the score
notates (a ``Key`` with a mode), else music21's Krumhansl-Schmuckler estimate.

Invalid sequences are repaired, never refused
---------------------------------------------
A model can emit any token in any order.  :func:`tokens_to_piece` accepts every sequence of the
encoding's tokens and counts the repairs it made (``Piece.repairs``):

* ``|`` where a step is half written ends that step early: the voices not yet written hold
  (in the corpus the top voice always follows ``|``, so a model that writes ``|`` goes on with the
  top voice, and the decoder follows it);
* ``_`` in a voice that is silent continues the rest;
* a last step with missing voices is completed with holds;
* everything after ``<end>`` is ignored.

Position alone says which voice a token is for, so no repair can put a note in the wrong voice.
Tokens that are not of this encoding (a foreign vocabulary) are a DataError.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from framework.errors import DataError

ENCODING_VERSION = 1  # bump when the token layout changes: it keys the parsed-corpus cache
BAR, HOLD, REST, END = "|", "_", "R", "<end>"
SPECIALS = (BAR, HOLD, REST, END)
RESOLUTIONS = (1, 2, 3, 4, 6, 8, 12)  # steps per quarter note
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_PITCH = re.compile(r"^([A-G]#?)(-?\d+)$")


class SkipPiece(Exception):
    """A score that the encoding cannot represent (e.g. the wrong number of voices)."""


@dataclass(frozen=True)
class EncodingOptions:
    resolution: int = 4  # grid steps per quarter note: 4 = sixteenths, 2 = eighths
    voices: int = 4  # tokens per step, top voice first
    transpose: bool = True  # shift every piece so that its tonic is C

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS} steps per quarter note, "
                             f"got {self.resolution}")
        if not 1 <= self.voices <= 16:
            raise ValueError(f"voices must be in 1..16, got {self.voices}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: Any) -> EncodingOptions:
        """From a dataset config (mapping or dataclass) that has these fields."""
        get = config.get if isinstance(config, dict) else lambda k, d: getattr(config, k, d)
        return cls(resolution=int(get("resolution", 4)), voices=int(get("voices", 4)),
                   transpose=bool(get("transpose", True)))


@dataclass(frozen=True)
class Note:
    voice: int  # 0 = top voice
    start: int  # grid steps
    end: int  # exclusive, > start
    pitch: int  # MIDI number


@dataclass
class Piece:
    """Notes on the step grid; ``bars`` are the steps where bars start."""

    notes: list[Note]
    n_steps: int
    bars: list[int]
    options: EncodingOptions
    repairs: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def voice(self, v: int) -> list[Note]:
        return [n for n in self.notes if n.voice == v]

    @property
    def steps_per_bar(self) -> int:
        """The most common distance between bar tokens (4/4 when there are fewer than two)."""
        gaps = Counter(b - a for a, b in zip(self.bars, self.bars[1:], strict=False) if b > a)
        if not gaps:
            return 4 * self.options.resolution
        return gaps.most_common(1)[0][0]


# ------------------------------------------------------------------------------ pitch tokens


def pitch_token(midi: int) -> str:
    if not 0 <= midi <= 127:
        raise DataError(f"MIDI pitch {midi} is outside 0..127")
    return f"{_NAMES[midi % 12]}{midi // 12 - 1}"


def token_pitch(token: str) -> int | None:
    """The MIDI number of a pitch token, None for the special tokens; else a DataError."""
    if token in SPECIALS:
        return None
    m = _PITCH.match(token)
    midi = (int(m.group(2)) + 1) * 12 + _NAMES.index(m.group(1)) if m else -1
    if not 0 <= midi <= 127:
        raise DataError(f"token {token!r} is not an event of the music encoding (a pitch such "
                        f"as C4 or F#3, or one of {' '.join(SPECIALS)})")
    return midi


# ------------------------------------------------------------------------------ piece <-> tokens


def piece_to_tokens(piece: Piece) -> list[str]:
    """The token sequence of ``piece`` (without the end token)."""
    V, n = piece.options.voices, piece.n_steps
    sounding = np.full((n, V), -1, dtype=np.int64)
    onset = np.zeros((n, V), dtype=bool)
    for note in sorted(piece.notes, key=lambda x: (x.start, x.voice)):
        start, end = max(note.start, 0), min(note.end, n)
        if end <= start:
            continue
        # Notes come in order of onset, so whatever is written from ``start`` on belongs to an
        # earlier note of this voice: the new note cuts it short.
        sounding[start:, note.voice] = -1
        onset[start:, note.voice] = False
        sounding[start:end, note.voice] = note.pitch
        onset[start, note.voice] = True
    bars = set(piece.bars)
    out: list[str] = []
    for t in range(n):
        if t in bars:
            out.append(BAR)
        for v in range(V):
            p = int(sounding[t, v])
            out.append(REST if p < 0 else pitch_token(p) if onset[t, v] else HOLD)
    return out


def tokens_to_piece(tokens: Iterable[str], options: EncodingOptions) -> Piece:
    """Decode any sequence of the encoding's tokens, repairing what is invalid (module doc)."""
    V = options.voices
    open_: list[tuple[int, int] | None] = [None] * V  # per voice: (start step, pitch)
    notes: list[Note] = []
    bars: list[int] = []
    repairs = 0
    t = v = 0

    def close(voice: int, step: int) -> None:
        held = open_[voice]
        if held is not None:
            notes.append(Note(voice, held[0], step, held[1]))
            open_[voice] = None

    for token in tokens:
        if token == END:
            break
        if token == BAR:
            if v:  # a bar line inside a step ends it: the voices not yet written hold
                repairs += 1
                v, t = 0, t + 1
            if not bars or bars[-1] != t:
                bars.append(t)
            continue
        if token == HOLD:
            if open_[v] is None:
                repairs += 1  # nothing to hold: the rest goes on
        elif token == REST:
            close(v, t)
        else:
            pitch = token_pitch(token)
            close(v, t)
            open_[v] = (t, int(pitch))  # type: ignore[arg-type]
        v += 1
        if v == V:
            v, t = 0, t + 1
    if v:
        repairs += 1  # an unfinished last step: the missing voices hold
        t += 1
    for voice in range(V):
        close(voice, t)
    notes.sort(key=lambda n: (n.start, n.voice))
    return Piece(notes=notes, n_steps=t, bars=bars, options=options, repairs=repairs)


def split_tokens(text: str | Sequence[str]) -> list[str]:
    """Tokens of a generated text (tokens separated by whitespace) or of a token list."""
    return text.split() if isinstance(text, str) else list(text)


# ------------------------------------------------------------------------------ scores (music21)


def _step(quarters: float, resolution: int) -> int:
    # Round half up (not to even): an onset halfway between two steps goes to the later one.
    return int(math.floor(float(quarters) * resolution + 0.5))


def transposition(score: Any) -> tuple[int, str]:
    """Semitones (-6..+5) that move the score's tonic to C, and the key's name."""
    from music21 import key

    notated = next((k for k in score.recurse().getElementsByClass(key.Key)), None)
    try:
        found = notated if notated is not None else score.analyze("key")
    except Exception as exc:  # music21's key finder fails on pieces of very few notes
        raise SkipPiece(f"music21 found no key ({type(exc).__name__}); set "
                        f"dataset.transpose=false to keep it") from None
    pc = found.tonic.pitchClass
    return ((0 - pc + 6) % 12) - 6, f"{found.tonic.name} {found.mode}"


def score_to_piece(score: Any, options: EncodingOptions, *, order_by_pitch: bool = False) -> Piece:
    """A music21 score on the step grid; raises SkipPiece when it has the wrong number of voices.

    ``order_by_pitch`` sorts the parts by mean pitch, highest first (MIDI tracks come in any
    order); otherwise the score's part order is the voice order (a chorale's S, A, T, B).
    """
    res, V = options.resolution, options.voices
    parts = [p for p in score.parts if len(p.recurse().notes)]
    if len(parts) != V:
        raise SkipPiece(f"{len(parts)} voices with notes, the encoding has {V}")
    per_part: list[list[tuple[int, int, list[int]]]] = []
    for part in parts:
        events = []
        for el in part.stripTies().flatten().notes:
            if el.duration.isGrace or el.quarterLength == 0:
                continue
            start = _step(el.offset, res)
            end = _step(float(el.offset) + float(el.quarterLength), res)
            if end > start:  # else shorter than one grid step
                events.append((start, end, sorted(p.midi for p in el.pitches)))
        per_part.append(events)
    if order_by_pitch:
        per_part.sort(key=lambda ev: -float(np.mean([e[2][0] for e in ev])) if ev else 0.0)
    shift, key_name = transposition(score) if options.transpose else (0, "")
    notes = []
    for v, events in enumerate(per_part):
        for start, end, pitches in events:
            pitch = pitches[-1] if v < (V + 1) // 2 else pitches[0]
            notes.append(Note(v, start, end, pitch + shift))
    if not notes:
        raise SkipPiece("no note is as long as one grid step")
    notes.sort(key=lambda n: (n.start, n.voice))
    n_steps = max([_step(score.highestTime, res), *(n.end for n in notes)])
    bars = sorted({_step(m.offset, res) for m in parts[0].getElementsByClass("Measure")})
    bars = [b for b in bars if b < n_steps] or [0]
    if not 0 <= min(n.pitch for n in notes) <= max(n.pitch for n in notes) <= 127:
        raise SkipPiece("transposed pitches leave the MIDI range")
    return Piece(notes=notes, n_steps=n_steps, bars=bars, options=options,
                 info={"key": key_name, "shift": shift})


def encode_score(score: Any, options: EncodingOptions, *,
                 order_by_pitch: bool = False) -> list[str]:
    """Tokens of a music21 score (without the end token)."""
    return piece_to_tokens(score_to_piece(score, options, order_by_pitch=order_by_pitch))


__all__ = ["BAR", "END", "ENCODING_VERSION", "HOLD", "REST", "SPECIALS", "EncodingOptions",
           "Note", "Piece", "SkipPiece", "encode_score", "piece_to_tokens", "pitch_token",
           "score_to_piece", "split_tokens", "token_pitch", "tokens_to_piece", "transposition"]
