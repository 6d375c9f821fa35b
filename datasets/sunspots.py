"""Yearly sunspot numbers 1700-2008 (309 values, none missing): a one-column series.

Public domain (NOAA National Geophysical Data Center), as shipped by statsmodels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.data import Source, check_common, github_raw, locate
from framework.data.taskdata import SeriesDataset, check_missing
from framework.data.taskfiles import read_series_csv
from framework.registry import DATASETS


@dataclass
class SunspotsConfig:
    name: str = "sunspots"
    path: str | None = None  # your copy with the same columns (not checksummed)
    val_fraction: float = 0.2  # the last 20% of the years (62)
    missing: str = "interpolate"  # interpolate | drop | error

    def __post_init__(self) -> None:
        check_common(self.val_fraction)
        check_missing(self.missing)


@DATASETS.register("sunspots", schema=SunspotsConfig)
class Sunspots(SeriesDataset):
    schema = SunspotsConfig
    # statsmodels v0.14.6 (the file is unchanged since 2012).
    source = Source(
        "sunspots.csv",
        github_raw("statsmodels/statsmodels", "40e6a84d26ac74623c6b94b718f0987ef0351c53",
                   "statsmodels/datasets/sunspots/sunspots.csv"),
        "f67889b1d9002cd5227f0e0ef54e35b419cdd85a31279adef6f73fb41e5c0a9b",
    )

    def read(self) -> tuple[np.ndarray, np.ndarray | None, list[str], str]:
        path = locate(self.source, self.config.path)
        values, years = read_series_csv(path, column="SUNACTIVITY", time_column="YEAR")
        return values, years, ["SUNACTIVITY"], str(path)
