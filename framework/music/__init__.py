"""Music as token sequences: event encoding, MIDI files, piano rolls and the parsed-corpus cache.

music21 is an optional dependency (``pip install -e ".[music]"``); only the functions that read or
write scores import it, so the encoding and the piano roll work without it.
"""

from __future__ import annotations

from typing import Any

from framework.errors import ConfigError

EXTRA_HINT = 'pip install -e ".[music]"'


def require_music21(what: str) -> Any:
    """The ``music21`` module, or a one-line ConfigError naming the extra to install."""
    try:
        import music21
    except ImportError:
        raise ConfigError(f"{what} needs the optional package music21; install it with "
                          f"{EXTRA_HINT}") from None
    return music21


__all__ = ["EXTRA_HINT", "require_music21"]
