"""Readers of labelled and series data files: label folders, ``text<TAB>label``, series CSVs.

Every problem with a file is a one-line :class:`~framework.errors.DataError` naming the file, the
line and the fix.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from framework.data.files.fetch import read_text
from framework.errors import DataError

# Field values read as "no value" (compared after strip() and lower()).
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


def user_path(path: str) -> Path:
    """``dataset.path`` as a Path that exists (a file or a folder)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"dataset path {p} does not exist; fix dataset.path")
    return p


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 text file."""
    return [s for s in (line.strip() for line in read_text(path).split("\n")) if s]


def read_label_folder(directory: Path) -> tuple[list[str], list[str], list[str]]:
    """``(texts, labels, classes)`` from a folder of ``<label>.txt`` files, one text per line."""
    files = sorted(p for p in directory.glob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"{directory} has no <label>.txt files; put one file per class there, "
                        f"one text per line")
    texts: list[str] = []
    labels: list[str] = []
    for f in files:
        lines = read_lines(f)
        if not lines:
            raise DataError(f"{f} has no non-empty lines; add examples of class "
                            f"'{f.stem}' or remove the file")
        texts += lines
        labels += [f.stem] * len(lines)
    return texts, labels, [f.stem for f in files]


def read_label_tsv(path: Path) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` from ``text<TAB>label`` lines; a first line ``text<TAB>label`` is a
    header and skipped."""
    texts: list[str] = []
    labels: list[str] = []
    for n, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(f"{path} line {n} has {len(fields)} tab-separated field(s); each "
                            f"line must be text<TAB>label")
        text, label = fields[0].strip(), fields[1].strip()
        if n == 1 and (text.lower(), label.lower()) == ("text", "label"):
            continue
        if not label:
            raise DataError(f"{path} line {n} has an empty label; give every text a label")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise DataError(f"{path} has no labelled lines; write text<TAB>label lines")
    return texts, labels


def time_axis(times: np.ndarray | None, n: int) -> np.ndarray:
    """Times as float64 (datetime64 in seconds) for interpolation; the row index if None."""
    if times is None:
        return np.arange(n, dtype=np.float64)
    if np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[s]").astype(np.float64)
    return np.asarray(times, dtype=np.float64)


def _parse_time(raw: str, time_format: str | None) -> float | np.datetime64:
    if time_format:
        return np.datetime64(datetime.strptime(raw, time_format))
    try:
        value = float(raw)
    except ValueError:
        return np.datetime64(raw)  # ISO 8601; anything else is a ValueError
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def read_series_csv(path: Path, *, column: str, time_column: str | None = None,
                    time_format: str | None = None,
                    delimiter: str = ",") -> tuple[np.ndarray, np.ndarray | None]:
    """``(values (N,) float64 with NaN for missing, times or None)`` from a CSV with a header.

    Missing values are empty fields or NA, N/A, NaN, null, None, ? (any case).  Times are numbers
    (e.g. years), ISO 8601 dates, or parsed with ``time_format`` (``datetime.strptime``).
    """
    reader = csv.reader(io.StringIO(read_text(path)), delimiter=delimiter)
    header = next((row for row in reader if any(f.strip() for f in row)), None)
    if header is None:
        raise DataError(f"{path} has no header line; the first line must name the columns")
    names = [h.strip() for h in header]
    index: dict[str, int] = {}
    for wanted, option in ((column, "dataset.column"), (time_column, "dataset.time_column")):
        if wanted is None:
            continue
        if wanted not in names:
            raise DataError(f"{path} has no column {wanted!r}; its columns are "
                            f"{', '.join(repr(c) for c in names)}; set {option}")
        index[wanted] = names.index(wanted)
    values: list[float] = []
    times: list[Any] = []
    for row in reader:
        if not any(f.strip() for f in row):
            continue
        line = reader.line_num
        if len(row) != len(names):
            raise DataError(f"{path} line {line} has {len(row)} field(s), the header has "
                            f"{len(names)}; fix the line")
        raw = row[index[column]].strip()
        if raw.lower() in MISSING_MARKERS:
            values.append(math.nan)
        else:
            try:
                value = float(raw)
            except ValueError:
                raise DataError(f"{path} line {line}: {raw!r} in column {column!r} is not a "
                                f"number; fix it, or leave the field empty (or NA) if it is "
                                f"missing") from None
            if not math.isfinite(value):
                raise DataError(f"{path} line {line}: {raw!r} in column {column!r} is not a "
                                f"finite number; leave the field empty if it is missing")
            values.append(value)
        if time_column is not None:
            raw_t = row[index[time_column]].strip()
            try:
                times.append(_parse_time(raw_t, time_format))
            except ValueError:
                fmt = f"the format {time_format!r}" if time_format else \
                    "a number or an ISO 8601 date"
                raise DataError(f"{path} line {line}: time {raw_t!r} in column {time_column!r} "
                                f"is not {fmt}; fix it or set dataset.time_format") from None
    if not values:
        raise DataError(f"{path} has a header but no data rows; add values")
    if time_column is None:
        return np.array(values, dtype=np.float64), None
    kinds = {isinstance(t, np.datetime64) for t in times}
    if len(kinds) > 1:
        raise DataError(f"{path}: column {time_column!r} mixes numbers and dates; use one form")
    t_arr = np.array(times, dtype="datetime64[s]" if kinds == {True} else np.float64)
    axis = time_axis(t_arr, len(t_arr))
    back = np.flatnonzero(np.diff(axis) <= 0)
    if len(back):
        raise DataError(f"{path}: times in column {time_column!r} are not increasing at data "
                        f"row {back[0] + 2}; sort the file by time and remove repeated times")
    return np.array(values, dtype=np.float64), t_arr


__all__ = ["MISSING_MARKERS", "read_label_folder", "read_label_tsv", "read_lines",
           "read_series_csv", "user_path"]
