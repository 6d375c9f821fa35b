"""Mauna Loa weekly atmospheric CO2 (ppm), 1958-03-29 to 2001-12-29: 2,284 weeks, 59 missing.

Public domain (Scripps / CDIAC flask data), as shipped by statsmodels.  Missing weeks are empty
fields; ``dataset.missing`` says what to do with them (linear interpolation in time by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.data import Source, check_common, github_raw, locate
from framework.data.taskdata import SeriesDataset, check_missing
from framework.data.taskfiles import read_series_csv
from framework.registry import DATASETS


@dataclass
class CO2Config:
    name: str = "co2"
    path: str | None = None  # your copy with the same columns (not checksummed)
    val_fraction: float = 0.2  # the last 20% of the weeks (457)
    missing: str = "interpolate"  # interpolate (linear in time) | drop | error

    def __post_init__(self) -> None:
        check_common(self.val_fraction)
        check_missing(self.missing)


@DATASETS.register("co2", schema=CO2Config)
class CO2(SeriesDataset):
    schema = CO2Config
    # statsmodels v0.14.6 (the file is unchanged since it was added in 2014).
    source = Source(
        "co2.csv",
        github_raw("statsmodels/statsmodels", "40e6a84d26ac74623c6b94b718f0987ef0351c53",
                   "statsmodels/datasets/co2/co2.csv"),
        "16695fa2786e53414e5a6b54767a3fdf5de99cfbc68617f69d1362d92776a92f",
    )

    def read(self) -> tuple[np.ndarray, np.ndarray | None, list[str], str]:
        path = locate(self.source, self.config.path)
        values, dates = read_series_csv(path, column="co2", time_column="date",
                                        time_format="%Y%m%d")
        return values, dates, ["co2"], str(path)
