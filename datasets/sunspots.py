"""Yearly sunspot numbers 1700-2008 (309 values, none missing): a one-column series.

Public domain (NOAA National Geophysical Data Center), as shipped by statsmodels.
"""

from __future__ import annotations

from dataclasses import dataclass

from framework.data import Source, github_raw
from framework.data.corpora.published import PublishedSeries, PublishedSeriesConfig
from framework.registry import DATASETS


@dataclass
class SunspotsConfig(PublishedSeriesConfig):
    name: str = "sunspots"  # val_fraction 0.2: the last 62 years


@DATASETS.register("sunspots", schema=SunspotsConfig)
class Sunspots(PublishedSeries):
    schema = SunspotsConfig
    # statsmodels v0.14.6 (the file is unchanged since 2012).
    source = Source(
        "sunspots.csv",
        github_raw("statsmodels/statsmodels", "40e6a84d26ac74623c6b94b718f0987ef0351c53",
                   "statsmodels/datasets/sunspots/sunspots.csv"),
        "f67889b1d9002cd5227f0e0ef54e35b419cdd85a31279adef6f73fb41e5c0a9b",
    )
    column, time_column = "SUNACTIVITY", "YEAR"
