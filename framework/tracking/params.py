"""MLflow params from config values: floats to 6 significant digits, sections as dotted keys."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

SIGNIFICANT_DIGITS = 6


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


__all__ = ["SIGNIFICANT_DIGITS", "flatten_config", "param_value"]
