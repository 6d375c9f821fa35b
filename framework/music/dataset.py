"""Base of the music dataset plugins: scores -> cached event tokens -> a lines corpus by piece.

A plugin lists its pieces (:meth:`MusicDataset.pieces`: an id, a name, and a function that parses
the score with music21); this class encodes them (:mod:`framework.music.encoding`), keeps the
tokens in the parsed-corpus cache (:mod:`framework.music.cache`), and builds a ``lines`` corpus
with one example per piece, ended by ``<end>``.  The validation set is a fixed-seed subset of
whole pieces (``split_seed``), never a cut through one.  It also writes training samples as MIDI
files and piano rolls (:meth:`render_samples`), which the trainer logs to MLflow.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from framework.data.corpora.text import Corpus, token_lines_corpus
from framework.errors import ConfigError, DataError
from framework.music import require_music21
from framework.music.cache import PieceCache
from framework.music.encoding import (
    ENCODING_VERSION,
    END,
    EncodingOptions,
    SkipPiece,
    encode_score,
)
from framework.registry import Plugin

PieceSource = tuple[str, str, Callable[[], Any]]  # (cache id, name shown to people, parse())


class MusicDataset(Plugin):
    """``MusicDataset(cfg)``, ``load() -> Corpus``, ``render_samples(texts, folder)``.

    Subclasses' schemas have ``resolution``, ``transpose``, ``val_fraction``, ``split_seed``,
    ``limit``, ``cache`` and optionally ``voices``; subclasses implement :meth:`pieces`.
    """

    kind: ClassVar[str] = "lines"
    requires: ClassVar[tuple[str, ...]] = ("music21",)  # the optional extra it needs
    order_by_pitch: ClassVar[bool] = False  # sort a score's parts by pitch to get the voices
    selection: ClassVar[str] = ""  # names how a plugin picks parts before encoding (cache key)

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        self.config = self.cfg
        try:
            self.encoding = EncodingOptions.from_config(self.config)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"dataset '{self.name}': {exc}") from None
        self.music21 = require_music21(f"dataset '{self.name}'")

    @property
    def mode(self) -> str:
        return self.kind

    def pieces(self) -> Sequence[PieceSource]:
        raise NotImplementedError

    def origin(self) -> str:
        """Where the pieces come from, for the corpus and error messages."""
        return self.name

    def cache_fields(self) -> dict[str, Any]:
        return {"music21": str(self.music21.__version__), "encoding": ENCODING_VERSION,
                "options": self.encoding.to_dict(), "order_by_pitch": self.order_by_pitch,
                "selection": self.selection}

    def _encode(self, parse: Callable[[], Any]) -> dict[str, Any]:
        try:
            score = parse()
        except DataError as exc:
            return {"skipped": str(exc)}
        except Exception as exc:  # music21 raises many kinds on a file it cannot read
            return {"skipped": f"music21 could not read it ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"}
        try:  # errors other than SkipPiece are bugs and must not be cached as a skip
            return {"tokens": encode_score(score, self.encoding,
                                           order_by_pitch=self.order_by_pitch)}
        except SkipPiece as exc:
            return {"skipped": str(exc)}

    def encoded(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(name, cache entry)`` per piece, parsing only what the cache does not hold."""
        pieces = list(self.pieces())
        cache = PieceCache(self.name, self.cache_fields()) if self.config.cache else None
        missing = len(pieces) if cache is None else sum(
            1 for pid, _, _ in pieces if pid not in cache.entries)
        if missing > 1:
            where = f"; cached in {cache.path}" if cache is not None else ""
            print(f"{self.name}: parsing {missing} score(s) with music21{where}",
                  file=sys.stderr, flush=True)
        try:
            for pid, name, parse in pieces:
                entry = cache.get(pid) if cache is not None else None
                if entry is None:
                    entry = self._encode(parse)
                    if cache is not None:
                        cache.put(pid, entry)
                yield name, entry
        finally:
            if cache is not None:
                cache.save()  # also after Ctrl-C: the scores parsed so far are kept

    def load(self) -> Corpus:
        names, examples, skipped = [], [], []
        for name, entry in self.encoded():
            if "tokens" in entry:
                names.append(name)
                examples.append(entry["tokens"])
            else:
                skipped.append(f"{name}: {entry['skipped']}")
        if not examples:
            shown = "; ".join(skipped[:3]) or "no pieces found"
            raise DataError(f"dataset '{self.name}' has no piece the encoding can use "
                            f"({shown}){self.no_pieces_hint()}")
        corpus = token_lines_corpus(
            self.name, examples, eos=END, val_fraction=self.config.val_fraction,
            split_seed=self.config.split_seed, source=self.origin(),
            metadata={"encoding": self.encoding.to_dict(), "pieces": names,
                      "skipped": skipped})
        return corpus

    def no_pieces_hint(self) -> str:
        return ""

    def render_samples(self, texts: Sequence[str], folder: Path) -> list[str]:
        """Each generated text as ``sample_<i>.mid`` and ``sample_<i>.png`` in ``folder``."""
        from framework.music.render import render_samples

        return render_samples(texts, folder, self.encoding, title=self.name)


def check_music_options(val_fraction: float, split_seed: int, limit: int | None) -> None:
    """Range checks shared by the music dataset schemas (raise ValueError, as schemas must)."""
    from framework.data.corpora.text import check_common

    check_common(val_fraction, split_seed)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or null (all pieces), got {limit}")


__all__ = ["MusicDataset", "PieceSource", "check_music_options"]
