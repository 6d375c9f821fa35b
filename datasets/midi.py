"""A folder of the user's own MIDI files, as event tokens (one example per file).

``dataset=midi dataset.path=<folder>``: every ``*.mid``/``*.midi`` file under the folder (sorted
by relative path) is read with music21; files with exactly ``voices`` tracks that hold notes are
kept, their tracks ordered by mean pitch (highest first = voice 1).  Needs
``pip install -e ".[music]"``.  The parsed tokens are cached by each file's sha256, so editing a
file re-parses it and moving the folder does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from framework.data.files.fetch import sha256_of
from framework.errors import ConfigError, DataError
from framework.music.dataset import MusicDataset, PieceSource, check_music_options
from framework.music.encoding import EncodingOptions
from framework.music.midi import read_midi
from framework.registry import DATASETS

SUFFIXES = (".mid", ".midi")


@dataclass
class MidiConfig:
    name: str = "midi"
    path: str | None = None  # required: a folder of .mid files (searched recursively)
    voices: int = 4  # tokens per time step; files with another number of tracks are skipped
    resolution: int = 4  # grid steps per quarter note: 4 = sixteenths, 2 = eighths
    transpose: bool = True  # shift every piece so that its tonic is C
    val_fraction: float = 0.1  # a fixed-seed subset of whole files
    split_seed: int = 0
    limit: int | None = None  # only the first N files (null: all)
    cache: bool = True

    def __post_init__(self) -> None:
        check_music_options(self.val_fraction, self.split_seed, self.limit)
        EncodingOptions(resolution=self.resolution, voices=self.voices, transpose=self.transpose)


@DATASETS.register("midi", schema=MidiConfig)
class MidiFolder(MusicDataset):
    schema = MidiConfig
    order_by_pitch = True  # MIDI tracks come in any order
    contract_skip = "reads a folder of the user's MIDI files: tests/music/test_music.py builds one"

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        if not str(self.config.path or "").strip():
            raise ConfigError("dataset 'midi' needs a folder: set dataset.path=/path/to/midi/files")

    def folder(self) -> Path:
        folder = Path(str(self.config.path)).expanduser()
        if not folder.is_dir():
            raise DataError(f"dataset.path {folder} is not a folder; point it at a folder of "
                            f".mid files")
        return folder

    def pieces(self) -> list[PieceSource]:
        folder = self.folder()
        files = sorted((p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES
                        and p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
        if not files:
            raise DataError(f"{folder} holds no .mid or .midi files; fix dataset.path")
        if self.config.limit is not None:
            files = files[: self.config.limit]
        return [(sha256_of(p), p.relative_to(folder).as_posix(), partial(read_midi, p))
                for p in files]

    def origin(self) -> str:
        return str(self.folder())

    def no_pieces_hint(self) -> str:
        return (f"; use files with {self.config.voices} tracks of notes, or set dataset.voices "
                f"to their number of tracks")
