"""Mauna Loa weekly atmospheric CO2 (ppm), 1958-03-29 to 2001-12-29: 2,284 weeks, 59 missing.

Public domain (Scripps / CDIAC flask data), as shipped by statsmodels.  Missing weeks are empty
fields; ``dataset.missing`` says what to do with them (linear interpolation in time by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from framework.data import Source, github_raw
from framework.data.corpora.published import PublishedSeries, PublishedSeriesConfig
from framework.registry import DATASETS


@dataclass
class CO2Config(PublishedSeriesConfig):
    name: str = "co2"  # val_fraction 0.2: the last 457 weeks


@DATASETS.register("co2", schema=CO2Config)
class CO2(PublishedSeries):
    schema = CO2Config
    # statsmodels v0.14.6 (the file is unchanged since it was added in 2014).
    source = Source(
        "co2.csv",
        github_raw("statsmodels/statsmodels", "40e6a84d26ac74623c6b94b718f0987ef0351c53",
                   "statsmodels/datasets/co2/co2.csv"),
        "16695fa2786e53414e5a6b54767a3fdf5de99cfbc68617f69d1362d92776a92f",
    )
    column, time_column, time_format = "co2", "date", "%Y%m%d"
