"""Series corpora: real-valued series with timestamps, missing values handled, split in time.

:class:`SeriesCorpus` (``kind == "series"``): float64 values ``(N, D)`` in original units,
optional timestamps, the count of missing values and how they were handled, the last
``val_fraction`` as validation, and standardisation statistics of the training part only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framework.data.corpora.base import TaskDataset
from framework.data.files.readers import time_axis
from framework.errors import ConfigError, DataError

MISSING_POLICIES = ("interpolate", "drop", "error")
# Series values are standardised and compared in float64 (means, squared errors, differences):
# beyond this magnitude their squares overflow, so larger values are refused, not mis-scaled.
MAX_MAGNITUDE = 1e150


def too_large(values: np.ndarray) -> float | None:
    """The largest magnitude in ``values`` when it exceeds :data:`MAX_MAGNITUDE`, else None."""
    largest = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return largest if largest > MAX_MAGNITUDE else None



@dataclass
class SeriesCorpus:
    """A real-valued series ``values`` (N, D) float64, original units; the last ``n_val`` rows
    are validation.  ``mean``/``std`` (D,) are of the training rows only."""

    name: str
    values: np.ndarray
    columns: tuple[str, ...]
    times: np.ndarray | None  # (N,) float64 or datetime64, increasing; None: row index
    n_train: int
    mean: np.ndarray
    std: np.ndarray
    n_missing: int  # missing values in the file (before handling)
    missing: str  # how they were handled: interpolate | drop | error
    observed: np.ndarray  # (N,) bool, False where a row holds an interpolated value
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "series"

    @property
    def n_val(self) -> int:
        return len(self.values) - self.n_train

    @property
    def dim(self) -> int:
        return self.values.shape[1]

    @property
    def train(self) -> np.ndarray:
        return self.values[: self.n_train]

    @property
    def val(self) -> np.ndarray:
        return self.values[self.n_train :]

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Original units -> standardised with the training statistics."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def unscale(self, z: np.ndarray) -> np.ndarray:
        """Standardised -> original units."""
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


def handle_missing(values: np.ndarray, times: np.ndarray | None, policy: str, *,
                   where: str = "the series", columns: Sequence[str] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(values, times, observed)`` with the NaNs of ``values`` (N, D) handled by ``policy``.

    ``interpolate``: linear in time (the timestamps if given, else the row index); values
    before the first or after the last observation take the nearest observed value.
    ``drop``: rows with any missing value are removed.  ``error``: any missing value is an error.
    """
    if policy not in MISSING_POLICIES:
        raise ConfigError(f"dataset.missing must be one of {', '.join(MISSING_POLICIES)}, "
                          f"got {policy!r}")
    values = np.array(values, dtype=np.float64)
    bad = np.isnan(values)
    observed = ~bad.any(axis=1)
    if not bad.any():
        return values, times, observed
    if policy == "error":
        rows = np.flatnonzero(~observed)
        shown = ", ".join(str(r + 1) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise DataError(f"{where} has {int(bad.sum())} missing value(s) (data rows {shown}); "
                        f"set dataset.missing=interpolate or dataset.missing=drop")
    if policy == "drop":
        kept_times = None if times is None else times[observed]
        return values[observed], kept_times, np.ones(int(observed.sum()), dtype=bool)
    t = time_axis(times, len(values))
    for d in range(values.shape[1]):
        m = bad[:, d]
        if m.all():
            column = repr(columns[d]) if columns else str(d)
            raise DataError(f"{where}: column {column} has no values at all; use another column")
        values[m, d] = np.interp(t[m], t[~m], values[~m, d])
    return values, times, observed


def series_corpus(name: str, values: np.ndarray, *, columns: Sequence[str],
                  times: np.ndarray | None = None, missing: str = "interpolate",
                  val_fraction: float = 0.2, source: str = "",
                  metadata: dict[str, Any] | None = None) -> SeriesCorpus:
    """Handle missing values (NaN in ``values``), split off the last ``val_fraction``, scale."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    where = source or name
    n_missing = int(np.isnan(values).sum())
    n_rows = len(values)
    values, times, observed = handle_missing(values, times, missing, where=where,
                                             columns=columns)
    n = len(values)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    n_train = n - n_val
    if n_train < 2:
        raise DataError(f"{where} has {n} usable row(s), too few for a series: it needs at "
                        f"least 2 training rows and {n_val} validation row(s) with "
                        f"val_fraction={val_fraction}; use a longer series")
    for column, col in zip(columns, values.T, strict=True):
        largest = too_large(col)
        if largest is not None:
            raise DataError(f"{where}: column {column} has values as large as {largest:.3g}, "
                            f"beyond the {MAX_MAGNITUDE:.0e} a series model can scale in float64; "
                            f"rescale the column (divide it by a power of ten)")
    mean = values[:n_train].mean(axis=0)
    std = values[:n_train].std(axis=0)
    if not np.all(std > 0):
        const = [c for c, s in zip(columns, std, strict=True) if not s > 0]
        raise DataError(f"{where}: column {', '.join(const)} is constant over the training "
                        f"part and cannot be scaled; use another column")
    meta = {"n_rows": n, "n_missing": n_missing, "missing": missing,
            "n_dropped": n_rows - n, "n_interpolated_rows": int((~observed).sum()),
            "val_fraction": val_fraction, **(metadata or {})}
    return SeriesCorpus(name=name, values=values, columns=tuple(columns), times=times,
                        n_train=n_train, mean=mean, std=std, n_missing=n_missing,
                        missing=missing, observed=observed, source=source, metadata=meta)



def check_missing(missing: str) -> None:
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}")


class SeriesDataset(TaskDataset):
    """A series read from one CSV; subclasses implement :meth:`read`.  Schema fields used here:
    ``val_fraction``, ``missing``."""

    kind = "series"

    def read(self) -> tuple[np.ndarray, np.ndarray | None, list[str], str]:
        """``(values with NaN for missing, times or None, column names, source description)``."""
        raise NotImplementedError

    def load(self) -> SeriesCorpus:
        values, times, columns, source = self.read()
        return series_corpus(self.name, values, columns=columns, times=times,
                             missing=self.config.missing, val_fraction=self.config.val_fraction,
                             source=source)


