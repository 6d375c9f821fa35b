"""Base of the series datasets shipped as a pinned public CSV (``co2``, ``sunspots``).

Their options and how they read their one column live here, so that each plugin file only names
its source and its columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from framework.data.corpora.series import SeriesDataset, check_missing
from framework.data.corpora.text import check_common
from framework.data.files.fetch import Source, locate
from framework.data.files.readers import read_series_csv


@dataclass
class PublishedSeriesConfig:
    """Options every published series takes; a plugin's schema subclasses it and sets ``name``."""

    name: str = ""
    path: str | None = None  # your copy with the same columns (not checksummed)
    val_fraction: float = 0.2  # the last 20% of the series
    missing: str = "interpolate"  # interpolate (linear in time) | drop | error

    def __post_init__(self) -> None:
        check_common(self.val_fraction)
        check_missing(self.missing)


class PublishedSeries(SeriesDataset):
    """A one-column series: ``column`` of the CSV ``source`` (found through ``dataset.path``,
    ``RNNLAB_DATA_DIR`` or the checksummed download), timed by ``time_column``."""

    source: ClassVar[Source]
    column: ClassVar[str]
    time_column: ClassVar[str | None] = None
    time_format: ClassVar[str | None] = None  # strptime format of time_column, None: numbers

    def read(self) -> tuple[np.ndarray, np.ndarray | None, list[str], str]:
        path = locate(self.source, self.config.path)
        values, times = read_series_csv(path, column=self.column, time_column=self.time_column,
                                        time_format=self.time_format)
        return values, times, [self.column], str(path)


__all__ = ["PublishedSeries", "PublishedSeriesConfig"]
