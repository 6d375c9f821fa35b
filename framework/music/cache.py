"""The parsed-corpus cache: token sequences of parsed scores, as JSON in the user cache directory.

Parsing a score with music21 takes 0.1-0.25 s, the chorale corpus minutes, so the tokens of
every parsed piece are kept in ``$RNNLAB_CACHE_DIR/music/<corpus>-<key>.json`` (default
``~/.cache/rnnlab``).  ``<key>`` is a hash of everything the tokens depend on: the music21 version
(its corpus files and parser), the encoding version and the encoding options, so a change of any
of them is a new file, never a stale hit.  Inside, pieces are keyed by an id the dataset chooses
(the corpus path of a chorale, the sha256 of a user's MIDI file).  A piece the encoding cannot
represent is stored with the reason, so it is not parsed again either.

The file is plain JSON (never a pickle), written to a temporary file and renamed into place; an
unreadable or foreign file is ignored and rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from framework.data.files.fetch import cache_dir

_FORMAT = "rnnlab-music-cache"
_VERSION = 1


def cache_key(fields: dict[str, Any]) -> str:
    """A short stable hash of ``fields`` (JSON with sorted keys)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class PieceCache:
    """``{piece id: {"tokens": [...], ...} | {"skipped": reason}}`` backed by one JSON file."""

    def __init__(self, corpus: str, fields: dict[str, Any], directory: Path | None = None) -> None:
        self.fields = dict(fields)
        self.path = (directory or cache_dir() / "music") / f"{corpus}-{cache_key(fields)}.json"
        self.entries: dict[str, dict[str, Any]] = self._read()
        self.hits = 0
        self._dirty = False

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            obj = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing, or unreadable: parse again and rewrite
        if (not isinstance(obj, dict) or obj.get("format") != _FORMAT
                or obj.get("version") != _VERSION or obj.get("key") != self.fields
                or not isinstance(obj.get("pieces"), dict)):
            return {}
        return {k: v for k, v in obj["pieces"].items() if isinstance(v, dict)
                and (isinstance(v.get("tokens"), list) or isinstance(v.get("skipped"), str))}

    def get(self, piece_id: str) -> dict[str, Any] | None:
        entry = self.entries.get(piece_id)
        if entry is not None:
            self.hits += 1
        return entry

    def put(self, piece_id: str, entry: dict[str, Any]) -> None:
        self.entries[piece_id] = entry
        self._dirty = True

    def save(self) -> Path | None:
        """Write the file if anything was added; an unwritable cache only costs time later."""
        if not self._dirty:
            return None
        obj = {"format": _FORMAT, "version": _VERSION, "key": self.fields,
               "pieces": self.entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part",
                                       dir=self.path.parent)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(obj, fh, ensure_ascii=True, separators=(",", ":"))
            os.replace(tmp, self.path)  # readers see the old file or the whole new one
        except OSError:
            return None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._dirty = False
        return self.path


__all__ = ["PieceCache", "cache_key"]
