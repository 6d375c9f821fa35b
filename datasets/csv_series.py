"""The user's series: one numeric column of a CSV file with a header line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.data import check_common
from framework.data.corpora.series import SeriesDataset, check_missing
from framework.data.files.readers import read_series_csv, user_path
from framework.errors import ConfigError, DataError
from framework.registry import DATASETS


@dataclass
class CSVSeriesConfig:
    name: str = "csv_series"
    path: str | None = None  # required: the CSV file (first line: column names)
    column: str | None = None  # required: the column to forecast
    time_column: str | None = None  # optional: numbers or ISO dates, increasing
    time_format: str | None = None  # optional strptime format of time_column, e.g. %Y%m%d
    delimiter: str = ","
    val_fraction: float = 0.2  # the last part of the series
    missing: str = "interpolate"  # interpolate (linear in time) | drop | error

    def __post_init__(self) -> None:
        check_common(self.val_fraction)
        check_missing(self.missing)
        if len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {self.delimiter!r}")


@DATASETS.register("csv_series", schema=CSVSeriesConfig)
class CSVSeries(SeriesDataset):
    schema = CSVSeriesConfig
    needs_path = True
    contract_skip = "reads the user's CSV file: tests/data/test_taskdata.py writes one"

    def __init__(self, cfg: object = None, /, **options: object) -> None:
        super().__init__(cfg, **options)
        if not str(self.config.column or "").strip():
            raise ConfigError("dataset 'csv_series' needs the column to forecast; set "
                              "dataset.column=<name of a CSV column>")

    def read(self) -> tuple[np.ndarray, np.ndarray | None, list[str], str]:
        c = self.config
        path = user_path(str(c.path))
        if path.is_dir():
            raise DataError(f"dataset.path {path} is a directory; point it at a CSV file")
        values, times = read_series_csv(path, column=c.column, time_column=c.time_column,
                                        time_format=c.time_format, delimiter=c.delimiter)
        return values, times, [c.column], str(path)
