"""MLflow params: from config values (6 significant digits, dotted keys); which differ by run."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

SIGNIFICANT_DIGITS = 6
IGNORED_PARAM_PREFIXES = ("mlflow.",)  # where/how a run was logged, not what was trained


def param_value(value: Any) -> str:
    """A param as MLflow shows it: floats to 6 significant digits, everything else exact."""
    if isinstance(value, float) and not isinstance(value, bool) and math.isfinite(value):
        return repr(float(f"{value:.{SIGNIFICANT_DIGITS}g}"))
    return str(value)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"train.steps": "2000", ...}`` with every value as a string (floats
    rounded by :func:`param_value`, lists as JSON, an empty section as ``{}``)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                out.update(flatten_config(value, f"{name}."))
            else:
                out[name] = "{}"
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(list(value), default=str)
        else:
            out[name] = param_value(value)
    return out


def differing_params(runs: Sequence[Any]) -> list[str]:
    """Param keys whose values are not the same in every run (missing counts as a value)."""
    keys = sorted({k for run in runs for k in run.data.params
                   if not k.startswith(IGNORED_PARAM_PREFIXES)})
    return [k for k in keys if len({run.data.params.get(k) for run in runs}) > 1]


__all__ = ["IGNORED_PARAM_PREFIXES", "SIGNIFICANT_DIGITS", "differing_params", "flatten_config",
           "param_value"]
