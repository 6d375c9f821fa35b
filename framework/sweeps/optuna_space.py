"""Hydra's sweep grammar as an Optuna search space, and trial params back into job overrides.

The grammar is hydra-optuna-sweeper's: ``choice(a, b)`` is categorical; ``range(start, stop,
step)`` is an int (or stepped float) distribution of the values Hydra's range lists (``stop`` is
exclusive); ``interval(low, high)`` is uniform over floats (Hydra parses its ends as floats; use
``range`` for ints), and ``tag(log, interval(...))`` log-uniform. Anything else (``key=value``)
is a fixed override that every trial gets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from framework.errors import ConfigError

_PLAIN = re.compile(r"^[A-Za-z0-9_./:+\-@%]*$")  # needs no quotes in a Hydra override value


def _categorical_values(override: Any) -> list[Any]:
    from hydra.core.override_parser.types import Transformer

    values = list(override.sweep_iterator(transformer=Transformer.encode))
    for value in values:
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise ConfigError(f"{override.input_line}: a choice takes plain values (str, int, "
                              f"float, bool, null), got {value!r}")
    return values


def _range_distribution(override: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    if sweep.shuffle or sweep.tags:
        return CategoricalDistribution(_categorical_values(override))
    values = sweep.range()
    if isinstance(values, range):  # Hydra's int range: stop is exclusive, Optuna's high is not
        if len(values) == 0:
            raise ConfigError(f"{override.input_line} is empty")
        low, high = sorted((values[0], values[-1]))
        return IntDistribution(low, high, step=abs(values.step))
    listed = [Decimal(str(v)) for v in override.sweep_iterator()]
    if not listed:
        raise ConfigError(f"{override.input_line} is empty")
    low, high = min(listed), max(listed)
    step = abs(Decimal(str(sweep.step)))
    if (high - low) % step != 0:  # not representable as a stepped float distribution
        return CategoricalDistribution(_categorical_values(override))
    return FloatDistribution(float(low), float(high), step=float(step))


def _interval_distribution(override: Any) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    sweep = override.value()
    log = "log" in sweep.tags
    unknown = set(sweep.tags) - {"log"}
    if unknown:
        raise ConfigError(f"{override.input_line}: unknown tag {sorted(unknown)[0]!r} "
                          f"(only 'log' means something to Optuna)")
    low, high = sweep.start, sweep.end
    if low >= high:
        raise ConfigError(f"{override.input_line}: the interval's low end must be below its "
                          f"high end")
    if log and low <= 0:
        raise ConfigError(f"{override.input_line}: a log interval needs a low end above 0")
    if isinstance(low, int) and isinstance(high, int):
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def parse_search_space(overrides: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """``(distributions by key, fixed overrides)`` from override strings; later ones win."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException
    from optuna.distributions import CategoricalDistribution

    parser = OverridesParser.create()
    parsed = []
    for line in (str(o) for o in overrides):
        try:
            parsed += parser.parse_overrides([line])
        except HydraException as exc:
            reason = next((s.strip() for s in str(exc).splitlines()
                           if s.strip() and not s.startswith(("Error parsing", "See "))), "")
            raise ConfigError(f"search space {line!r}: {reason or 'not an override'}") from None
    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in parsed:
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if not override.is_sweep_override():
            fixed[key] = str(override.input_line)
        elif override.is_choice_sweep() and not isinstance(override.value(), Glob):
            space[key] = CategoricalDistribution(_categorical_values(override))
        elif override.is_range_sweep():
            space[key] = _range_distribution(override)
        elif override.is_interval_sweep():
            space[key] = _interval_distribution(override)
        else:
            raise ConfigError(f"{override.input_line}: the Optuna sweeper understands choice(), "
                              f"range(), interval() and tag(log, interval()), not this sweep")
    return space, list(fixed.values())


def override_value(value: Any) -> str:
    """A trial's param value as a Hydra override value (null, true/false, quoted if needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if text and _PLAIN.match(text) and not _reads_as_other_type(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _reads_as_other_type(text: str) -> bool:
    """Would Hydra read this string back as null, a bool or a number?"""
    if text.lower() in ("null", "true", "false"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """``key=value`` overrides of one trial's params."""
    return [f"{key}={override_value(value)}" for key, value in params.items()]


__all__ = ["override_value", "parse_search_space", "trial_overrides"]
