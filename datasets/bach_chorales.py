"""J. S. Bach's four-part chorales from music21's own corpus, as event tokens (one per chorale).

The pieces are the Riemenschneider collection of 371 chorales as music21 lists it
(``music21.corpus.chorales.Iterator``), each corpus file once (the collection repeats some
harmonisations): 350 files of compressed MusicXML shipped inside the music21 package, parsed
offline.  A chorale with instrumental parts keeps its four parts named Soprano, Alto, Tenor and
Bass; the chorales without exactly four such voices are skipped.  Needs
``pip install -e ".[music]"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from framework.music.dataset import MusicDataset, PieceSource, check_music_options
from framework.music.encoding import EncodingOptions
from framework.registry import DATASETS

_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")
VOICE_NAMES = ("soprano", "alto", "tenor", "bass")


@dataclass
class BachChoralesConfig:
    name: str = "bach_chorales"
    resolution: int = 4  # grid steps per quarter note: 4 = sixteenths, 2 = eighths
    transpose: bool = True  # shift every chorale so that its tonic is C (C major / C minor)
    val_fraction: float = 0.1  # a fixed-seed subset of whole chorales
    split_seed: int = 0  # seed of the held-out chorales, independent of the run seed
    limit: int | None = None  # only the first N chorales of the collection (null: all)
    cache: bool = True  # keep the parsed tokens in the user cache directory

    def __post_init__(self) -> None:
        check_music_options(self.val_fraction, self.split_seed, self.limit)
        EncodingOptions(resolution=self.resolution, voices=4, transpose=self.transpose)


def _parse(path: Path) -> Any:
    from music21 import converter, stream

    # forceSource: parse the file itself; music21 would otherwise read and write pickled copies.
    score = converter.parse(str(path), forceSource=True)
    if len(score.parts) <= len(VOICE_NAMES):
        return score
    # Some chorales come with instrumental parts (trumpets, continuo, ...): keep the choir's.
    names = [str(p.partName or "").strip().lower() for p in score.parts]
    chosen = [next((p for p, n in zip(score.parts, names, strict=True) if n.startswith(v)), None)
              for v in VOICE_NAMES]
    if any(p is None for p in chosen):
        return score  # the encoding skips it: not four voices
    choir = stream.Score()
    for part in chosen:
        choir.insert(0, part)
    return choir


def chorale_files(limit: int | None = None) -> list[tuple[str, Path]]:
    """``(corpus name, file)`` of the collection's chorales in catalogue order, each file once."""
    from music21 import corpus

    root = Path(corpus.__file__).resolve().parent
    out: dict[Path, str] = {}
    for name in corpus.chorales.Iterator(returnType="filename"):
        path = next((root / f"{name}{s}" for s in _SUFFIXES if (root / f"{name}{s}").is_file()),
                    None)
        if path is None:  # a catalogue name that differs from the file name (bwv18.5-l)
            found = corpus.getWork(name)
            path = found if isinstance(found, Path) else None
        if path is not None and path not in out:
            out[path] = name
        if limit is not None and len(out) >= limit:
            break
    return [(name, path) for path, name in out.items()]


@DATASETS.register("bach_chorales", schema=BachChoralesConfig)
class BachChorales(MusicDataset):
    schema = BachChoralesConfig
    selection = "satb-part-names"  # how _parse picks the voices; part of the cache key
    test_options = {"limit": 4}  # the plugin contract test parses four chorales, not 350

    def pieces(self) -> list[PieceSource]:
        return [(name, name, partial(_parse, path))
                for name, path in chorale_files(self.config.limit)]

    def origin(self) -> str:
        return f"music21 {self.music21.__version__} corpus: bach chorales"
