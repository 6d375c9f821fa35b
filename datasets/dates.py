"""Human dates and their ISO form ("wednesday may 9 2018" -> "2018-05-09"), from Faker and Babel."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.data.corpora.parallel import ParallelCorpus, ParallelDataset, parallel_corpus
from framework.errors import ConfigError, DataError
from framework.registry import DATASETS

EXTRA_HINT = 'pip install -e ".[dates]"'
# Babel's en_US formats and the course's patterns, drawn uniformly.  The course writes the year
# as YYY, which CLDR reads as the *week-based* year ("31 dec 2019" for 2018-12-31); the patterns
# here use the calendar year (yyy) so that every source names its target's date, unless
# dataset.week_year=true reproduces the course's strings exactly.
FORMATS = ("short", "medium", "long", "full", "d MMM yyy", "d MMMM yyy", "dd MMM yyy",
           "d MMM, yyy", "d MMMM, yyy", "dd, MMM yyy", "d MM yy", "MMMM d yyy", "MMMM d, yyy",
           "dd.MM.yy")
FIRST, LAST = datetime.date(1970, 1, 1), datetime.date(2029, 12, 31)  # the dates drawn
MAX_SOURCE, TARGET = 30, 10  # characters of a human date (at most) and of an ISO date
# The dates and formats above give about 178,000 distinct human dates; drawing distinct ones
# slows down as they run out (100,000 take ~7 s, 150,000 ~20 s, more may never finish).
MAX_PAIRS = 100_000


def require() -> tuple[Any, Any]:
    """The ``faker`` module and Babel's ``format_date``, or a one-line ConfigError naming the
    extra to install."""
    try:
        import faker
        from babel.dates import format_date
    except ImportError:
        raise ConfigError(f"dataset 'dates' needs the optional packages faker and babel; "
                          f"install them with {EXTRA_HINT}") from None
    return faker, format_date


def human(date: datetime.date, fmt: str, format_date: Any, week_year: bool) -> str:
    """``date`` in Babel's en_US format ``fmt``, lower-cased, commas removed."""
    if week_year:
        fmt = fmt.replace("y", "Y")
    return format_date(date, format=fmt, locale="en_US").lower().replace(",", "")


@dataclass
class DatesConfig:
    n_train: int = 10_000  # `dataset.n_train=`: training pairs
    n_val: int = 2_000  # `dataset.n_val=`: held-out pairs; no human date is in both splits
    seed: int = 0  # `dataset.seed=`: the dates and formats drawn (independent of the run seed)
    week_year: bool = False  # true: the course's YYY patterns (week-based year) verbatim

    def __post_init__(self) -> None:
        if not 1 <= self.n_train <= MAX_PAIRS or not 1 <= self.n_val <= MAX_PAIRS:
            raise ValueError(f"n_train and n_val must be in [1, {MAX_PAIRS:,}], got "
                             f"{self.n_train} and {self.n_val}")
        if self.n_train + self.n_val > MAX_PAIRS:
            raise ValueError(f"n_train + n_val must be at most {MAX_PAIRS:,} (the distinct human "
                             f"dates of 1970-2029 run out near 178,000), got "
                             f"{self.n_train:,} + {self.n_val:,}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@DATASETS.register("dates", schema=DatesConfig)
class Dates(ParallelDataset):
    """(human date, ISO date) pairs: the first ``n_train`` distinct human dates drawn train,
    the next ``n_val`` distinct ones (none of them in training) validate."""

    schema = DatesConfig
    requires = ("faker", "babel")
    test_options = {"n_train": 300, "n_val": 60}

    def pairs(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        cfg = self.cfg
        faker, format_date = require()
        fake = faker.Faker("en_US")
        fake.seed_instance(cfg.seed)
        choice = np.random.default_rng(cfg.seed)
        wanted = cfg.n_train + cfg.n_val
        seen: set[str] = set()
        pairs: list[tuple[str, str]] = []
        for _ in range(20 * wanted):  # distinct human dates run out only for huge sizes
            date = fake.date_between(start_date=FIRST, end_date=LAST)
            text = human(date, FORMATS[int(choice.integers(len(FORMATS)))], format_date,
                         cfg.week_year)
            if text in seen or len(text) > MAX_SOURCE:
                continue
            seen.add(text)
            pairs.append((text, date.isoformat()))
            if len(pairs) == wanted:
                return pairs[: cfg.n_train], pairs[cfg.n_train :]
        raise DataError(f"only {len(pairs):,} distinct human dates were drawn for the "
                        f"{wanted:,} asked; lower dataset.n_train or dataset.n_val")

    def load(self) -> ParallelCorpus:
        train, val = self.pairs()
        return parallel_corpus(self.name, train, val, source="generated: Faker dates, Babel "
                               "en_US formats", metadata={"seed": self.cfg.seed,
                                                          "week_year": self.cfg.week_year})
