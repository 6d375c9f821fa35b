"""What a music checkpoint generates, as MIDI files: ``python -m framework.generate out=x.mid``.

The encoding comes from the checkpoint's own dataset config, checked by the dataset's schema, so a
checkpoint of any other dataset is refused in one line before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from framework.errors import ConfigError
from framework.music.dataset import MusicDataset
from framework.music.encoding import EncodingOptions, split_tokens, tokens_to_piece
from framework.music.midi import DEFAULT_TEMPO, write_midi
from framework.music.summary import describe
from framework.plugins import load_plugins
from framework.registry import DATASETS

MIDI_SUFFIXES = (".mid", ".midi")


def encoding_of_checkpoint(meta: Mapping[str, Any]) -> EncodingOptions:
    """The encoding a checkpoint's model was trained with; ConfigError if it is not music."""
    load_plugins()
    dataset = dict((meta.get("config") or {}).get("dataset") or {})
    name = str(dataset.get("name", meta.get("dataset")))
    plugin = DATASETS.get(name) if name in DATASETS else None
    if not (isinstance(plugin, type) and issubclass(plugin, MusicDataset)):
        raise ConfigError(f"out=<file>.mid needs a model trained on a music dataset "
                          f"(bach_chorales, midi); this one was trained on '{name}'; drop out=")
    try:
        return EncodingOptions.from_config(DATASETS.validate(dataset))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the checkpoint's music encoding is invalid ({exc})") from None


def output_paths(out: str | os.PathLike[str], n: int) -> list[Path]:
    """``out`` for one sample; ``<stem>_1<suffix>`` ... ``<stem>_<n><suffix>`` for several."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise ConfigError(f"out={out} is a folder; name a .mid file in it, e.g. "
                          f"out={out / 'piece.mid'}")
    if out.suffix.lower() not in MIDI_SUFFIXES:
        raise ConfigError(f"out={out} must name a .mid file, e.g. out=piece.mid")
    folder = out.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ConfigError(f"out={out}: its folder {folder} {what}; create the folder or choose "
                          f"another out=")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"out={out}: the folder {folder} is not writable; choose another out=")
    paths = [out] if n == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}")
                                  for i in range(1, n + 1)]
    for path in paths:  # a FIFO would block the write until a reader appears
        if path.exists() and not path.is_file():
            from framework.data.files.fetch import file_kind

            raise ConfigError(f"out={path} is {file_kind(path.stat().st_mode)}, not a regular "
                              f"file; choose another out=")
    return paths


def write_generated(texts: Sequence[str], meta: Mapping[str, Any], out: str | os.PathLike[str],
                    *, tempo: int = DEFAULT_TEMPO) -> list[str]:
    """Write each generated text of a music checkpoint as a MIDI file; returns one line each."""
    options = encoding_of_checkpoint(meta)
    lines = []
    for path, text in zip(output_paths(out, len(texts)), texts, strict=True):
        piece = tokens_to_piece(split_tokens(text), options)
        write_midi(piece, path, tempo=tempo)
        lines.append(f"{path}: {describe(piece)}")
    return lines


__all__ = ["encoding_of_checkpoint", "output_paths", "write_generated"]
