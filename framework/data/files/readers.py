"""Readers of labelled and series data files: label folders, ``text<TAB>label``, labelled and
series CSVs, the sktime ``.ts`` format of labelled multivariate sequences, and the sequence files
given to ``framework.predict``.

Every problem with a file is a one-line :class:`~framework.errors.DataError` naming the file, the
line and the fix.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from framework.data.files.fetch import MAX_DATA_BYTES, check_regular_file, read_text, too_big
from framework.errors import DataError

# Field values read as "no value" (compared after strip() and lower()).
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


def user_path(path: str, key: str = "dataset.path") -> Path:
    """``dataset.path`` (or the setting ``key``) as a Path that exists (a file or a folder)."""
    p = Path(path).expanduser()
    try:
        os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"dataset path {p} does not exist; fix {key}") from None
    except OSError as exc:  # a name too long, a symlink loop, a folder we may not enter
        raise DataError(f"cannot read {p} ({exc.strerror or exc}); fix {key}") from None
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


def read_labelled_csv(path: Path, *, text_column: str, label_column: str,
                      labels: Sequence[str] | None = None) -> tuple[list[str], list[str], int]:
    """``(texts, labels, n_skipped)`` from a CSV with a header (``*.bz2`` decompressed); rows
    whose label is not one of ``labels`` (when given) are skipped and counted."""
    reader = csv.reader(io.StringIO(read_text(path)))
    header = next(reader, None)
    names = [h.strip() for h in header or []]
    for wanted in (text_column, label_column):
        if wanted not in names:
            raise DataError(f"{path} has no column {wanted!r}; its columns are "
                            f"{', '.join(repr(c) for c in names) or 'none'}")
    ti, li = names.index(text_column), names.index(label_column)
    keep = None if labels is None else set(labels)
    texts: list[str] = []
    out_labels: list[str] = []
    skipped = 0
    for row in reader:
        if not any(f.strip() for f in row):
            continue
        if len(row) != len(names):
            raise DataError(f"{path} line {reader.line_num} has {len(row)} field(s), the header "
                            f"has {len(names)}; fix the line")
        label = row[li].strip()
        if keep is not None and label not in keep:
            skipped += 1
            continue
        texts.append(row[ti])
        out_labels.append(label)
    if not texts:
        raise DataError(f"{path} has no labelled rows; add rows with a {text_column!r} and a "
                        f"{label_column!r}")
    return texts, out_labels, skipped


def _ts_value(raw: str, path: Path, n: int) -> float:
    text = raw.strip()
    if text == "?":
        raise DataError(f"{path} line {n} has a missing value '?'; rnnlab reads complete "
                        f"sequences only: fill or drop that example")
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path} line {n}: {text!r} is not a number; fix the line") from None
    if not math.isfinite(value):
        raise DataError(f"{path} line {n} has a non-finite value {text!r}; fix or drop that "
                        f"example")
    return value


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str], list[str] | None]:
    """``(examples, labels, classes)`` from an sktime ``.ts`` file of labelled sequences.

    The format: ``#`` comment lines, ``@`` header lines (``@dimensions D``, ``@classLabel true
    c1 c2 ...``, ...), then after ``@data`` one example a line: D channels separated by ``:``,
    each a comma-separated series, and the class label last.  Channels of one example have one
    length; examples may differ.  Each example is returned as a (timesteps, D) float64 array;
    ``classes`` is the ``@classLabel`` list (None without one).  Missing values ``?``, NaN,
    ragged channels, a wrong channel count, a label outside ``@classLabel`` and time stamps
    (``(t, v)`` pairs) are one-line errors naming the line.
    """
    dims: int | None = None
    classes: list[str] | None = None
    examples: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    for n, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{path} line {n} is neither a # comment nor an @ header before "
                                f"@data; is this an sktime .ts file?")
            key, _, rest = line[1:].partition(" ")
            key, words = key.lower(), rest.split()
            if key == "data":
                in_data = True
            elif key == "dimensions" and words:
                try:
                    dims = int(words[0])
                except ValueError:
                    raise DataError(f"{path} line {n}: @dimensions {words[0]!r} is not an "
                                    f"integer") from None
            elif key == "classlabel" and words and words[0].lower() == "true":
                classes = words[1:] or None
            elif key == "timestamps" and words and words[0].lower() == "true":
                raise DataError(f"{path} line {n}: time-stamped .ts files are not supported; "
                                f"write the values without time stamps")
            continue
        if "(" in line:
            raise DataError(f"{path} line {n}: time-stamped values are not supported; write the "
                            f"values without time stamps")
        *channels, label = line.split(":")
        label = label.strip()
        if not channels or not label:
            raise DataError(f"{path} line {n} has no channel:label layout; each line must be "
                            f"channel:channel:...:label")
        if dims is not None and len(channels) != dims:
            raise DataError(f"{path} line {n} has {len(channels)} channel(s), @dimensions says "
                            f"{dims}; fix the line")
        if classes is not None and label not in classes:
            raise DataError(f"{path} line {n}: label {label!r} is not one of @classLabel "
                            f"{' '.join(classes)}")
        if dims is None:
            dims = len(channels)
        examples.append(_ts_channels(channels, path, n))
        labels.append(label)
    if not in_data:
        raise DataError(f"{path} has no @data line; is this an sktime .ts file?")
    if not examples:
        raise DataError(f"{path} has no examples after @data; add one example a line")
    return examples, labels, classes


def read_sequences_csv(path: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """``(examples, labels, feature names)`` from a CSV of frames, one row per time step.

    The header names a ``sequence`` column (any id; rows of one id are its frames, in file
    order), a ``label`` column (the same on every frame of a sequence) and the feature columns
    (every other column, all numbers).  Missing or non-finite values are refused with the line.
    """
    reader = csv.reader(io.StringIO(read_text(path)))
    names = [h.strip() for h in next(reader, None) or []]
    for wanted in ("sequence", "label"):
        if wanted not in names:
            raise DataError(f"{path} has no column {wanted!r}; a sequences CSV has a header "
                            f"sequence,label,<feature>,... with one row per time step")
    si, li = names.index("sequence"), names.index("label")
    cols = [i for i in range(len(names)) if i not in (si, li)]
    if not cols:
        raise DataError(f"{path} has no feature columns besides sequence and label")
    frames: dict[str, list[list[float]]] = {}
    labels: dict[str, str] = {}
    for row in reader:
        if not any(f.strip() for f in row):
            continue
        n = reader.line_num
        if len(row) != len(names):
            raise DataError(f"{path} line {n} has {len(row)} field(s), the header has "
                            f"{len(names)}; fix the line")
        key, label = row[si].strip(), row[li].strip()
        if labels.setdefault(key, label) != label:
            raise DataError(f"{path} line {n}: sequence {key!r} has label {label!r} here and "
                            f"{labels[key]!r} before; give every frame of a sequence its label")
        frames.setdefault(key, []).append([_ts_value(row[i], path, n) for i in cols])
    if not frames:
        raise DataError(f"{path} has a header but no frames; add one row per time step")
    return ([np.array(f, dtype=np.float64) for f in frames.values()], list(labels.values()),
            [names[i] for i in cols])


def read_sequences_npz(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """``(examples, labels)`` from an ``.npz`` with ``x`` (N, T, D) numbers, ``labels`` (N,)
    (strings or integers) and optionally ``lengths`` (N,): sequence i is ``x[i, :lengths[i]]``
    (all T steps without ``lengths``).  Read without pickles, every member's size checked
    before it is loaded."""
    import zipfile

    fix = "write the file with np.savez(path, x=..., labels=..., lengths=...)"
    check_regular_file(path, fix)
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path} is not an .npz file ({exc}); {fix}") from None
    if total > MAX_DATA_BYTES:
        raise too_big(total, f"{path} uncompressed", fix)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "labels") if k not in data.files]
            if missing:
                raise DataError(f"{path} has no array {missing[0]!r} (it has "
                                f"{', '.join(data.files) or 'none'}); {fix}")
            x, labels = data["x"], data["labels"]
            lengths = data["lengths"] if "lengths" in data.files else None
    except ValueError as exc:  # an object array (it would need pickle) or a damaged member
        raise DataError(f"{path} cannot be read without pickle ({exc}); {fix}") from None
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number) or labels.shape != (len(x),):
        raise DataError(f"{path}: x must be (N, T, D) numbers and labels (N,), got x "
                        f"{x.shape} {x.dtype} and labels {labels.shape}; {fix}")
    if lengths is None:
        lengths = np.full(len(x), x.shape[1])
    if (lengths.shape != (len(x),) or not np.issubdtype(lengths.dtype, np.integer)
            or (len(lengths) and (lengths.min() < 1 or lengths.max() > x.shape[1]))):
        raise DataError(f"{path}: lengths must be (N,) integers in [1, {x.shape[1]}]; {fix}")
    return ([np.asarray(x[i, : int(n)], dtype=np.float64) for i, n in enumerate(lengths)],
            [str(y) for y in labels.tolist()])


# A file given to ``framework.predict`` holds a few sequences to classify, not a dataset: it is
# refused beyond this size before it is read.
MAX_REQUEST_FILE_BYTES = 16 * 2**20
_CASE_LINE = ":"  # what separates the channels of a .ts case line


def _frame(line: str, path: Path, n: int) -> list[float]:
    """One time step of a frames file: values separated by commas and/or white space."""
    return [_ts_value(v, path, n) for v in line.replace(",", " ").split()]


def _numbers(part: str) -> bool:
    try:
        [float(v) for v in part.split(",")]
    except ValueError:
        return False
    return True


def _case_line(line: str, path: Path, n: int, n_features: int | None) -> np.ndarray:
    """One ``.ts`` case line (``channel:channel:...[:label]``) as (timesteps, D); the label, when
    present, is dropped: the part beyond ``n_features`` channels, or a last part that is not a
    list of numbers."""
    parts = line.split(_CASE_LINE)
    if len(parts) > 1 and ((n_features is not None and len(parts) == n_features + 1)
                           or not _numbers(parts[-1])):
        parts = parts[:-1]
    return _ts_channels(parts, path, n)


def _ts_channels(channels: list[str], path: Any, n: int) -> np.ndarray:
    """A ``.ts`` example's comma-separated channels as a (timesteps, channels) float64 array."""
    series = [[_ts_value(v, path, n) for v in c.split(",")] for c in channels]
    lengths = {len(c) for c in series}
    if len(lengths) != 1:
        raise DataError(f"{path} line {n} has channels of different lengths "
                        f"({', '.join(str(k) for k in sorted(lengths))}); every channel of "
                        f"an example needs one value per time step")
    return np.array(series, dtype=np.float64).T.copy()


def read_sequence_file(path: Path, n_features: int | None = None) -> list[np.ndarray]:
    """The unlabelled sequences of a file given for prediction, each (timesteps, D) float64.

    Three layouts, told apart by their content:

    - frames: one time step per line, its values separated by commas and/or white space;
    - one case line of the sktime ``.ts`` format: the channels separated by ``:``, each a
      comma-separated series, optionally the class label last (ignored; ``n_features``, the
      model's channel count, tells a label from a channel);
    - a whole ``.ts`` file (``@`` headers, then ``@data``): every case, labels ignored.

    Blank lines and ``#`` comment lines are skipped.  A missing or non-numeric value, NaN or
    infinity, frames of different widths, channels of different lengths, a malformed ``.ts``
    file and a file without any time step are one-line errors naming the line.
    """
    fix = "give a file of frames, one time step per line"
    info = check_regular_file(path, fix)
    if info.st_size > MAX_REQUEST_FILE_BYTES:
        raise DataError(f"{path} is {info.st_size:,} bytes, more than the "
                        f"{MAX_REQUEST_FILE_BYTES // 2**20} MiB a sequence file for prediction "
                        f"may have; split it")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_REQUEST_FILE_BYTES + 1)
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start}); "
                        f"{fix}") from None
    if len(raw) > MAX_REQUEST_FILE_BYTES:  # it grew since it was checked
        raise DataError(f"{path} is larger than {MAX_REQUEST_FILE_BYTES // 2**20} MiB; split it")
    lines = [(n, line.strip()) for n, line in enumerate(text.split("\n"), start=1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataError(f"{path} has no time steps (the sequence is empty); {fix}")
    if lines[0][1].startswith("@"):
        return read_ts(path)[0]
    if any(_CASE_LINE in line for _, line in lines):
        if len(lines) != 1:
            raise DataError(f"{path} line {lines[1][0]}: a .ts case line must be the file's only "
                            f"line (add the @ headers and @data for several cases)")
        n, line = lines[0]
        return [_case_line(line, path, n, n_features)]
    frames = [_frame(line, path, n) for n, line in lines]
    width = len(frames[0])
    for (n, _), frame in zip(lines, frames, strict=True):
        if len(frame) != width:
            raise DataError(f"{path} line {n} has {len(frame)} value(s), line {lines[0][0]} has "
                            f"{width}; every time step needs the same features")
    return [np.array(frames, dtype=np.float64)]


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


__all__ = ["MISSING_MARKERS", "read_label_folder", "read_label_tsv", "read_labelled_csv",
           "read_lines", "read_sequence_file", "read_sequences_csv", "read_sequences_npz",
           "read_series_csv", "read_ts", "user_path"]
