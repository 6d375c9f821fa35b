"""Type and range checks of an untrusted checkpoint's metadata fields, each failure one line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from framework.errors import CheckpointError


def short(value: Any) -> str:
    """``repr(value)``, cut to 60 characters for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Fields:
    """Type and range checks on metadata fields; every failure names the field and the value."""

    FIX = "the file is damaged or was not written by rnnlab; use another checkpoint"

    def __init__(self, source: str) -> None:
        self.where = f"checkpoint {source}" if source else "checkpoint"

    def fail(self, name: str, want: str, got: Any) -> CheckpointError:
        return CheckpointError(f"{self.where}: metadata field '{name}' must be {want}, got "
                               f"{short(got)}; {self.FIX}")

    def integer(self, value: Any, name: str, lo: int, hi: int, optional: bool = False) -> Any:
        if value is None and optional:
            return None
        # type() rather than isinstance(): JSON true is a bool, and bool is an int subclass.
        if type(value) is not int or not lo <= value <= hi:
            raise self.fail(name, f"an integer in [{lo}, {hi}]" + (" or null" * optional), value)
        return value

    def number(self, value: Any, name: str, optional: bool = True) -> float | None:
        if value is None and optional:
            return None
        if type(value) not in (int, float) or not math.isfinite(value):
            raise self.fail(name, "a finite number" + (" or null" * optional), value)
        return float(value)

    def text(self, value: Any, name: str, choices: Sequence[str] = (),
            optional: bool = False) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or (choices and value not in choices):
            want = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            raise self.fail(name, want + (" or null" * optional), value)
        return value

    def mapping(self, value: Any, name: str, keys: Sequence[str] | None = None,
             optional: bool = True) -> dict[str, Any]:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.fail(name, "a JSON object", value)
        if keys is not None:
            unknown = sorted(set(value) - set(keys))
            if unknown:
                raise CheckpointError(f"{self.where}: metadata field '{name}' has unknown "
                                      f"key(s) {', '.join(map(repr, unknown))}; {self.FIX}")
        return value

    def numbers(self, value: Any, name: str, max_len: int) -> list[float]:
        """A list of 1 to ``max_len`` finite numbers."""
        if (not isinstance(value, list) or not 1 <= len(value) <= max_len or not all(
                type(v) in (int, float) and math.isfinite(v) for v in value)):
            raise self.fail(name, f"a list of 1 to {max_len} finite numbers", value)
        return [float(v) for v in value]

    def names(self, value: Any, name: str, lo: int, hi: int) -> list[str]:
        """A list of ``lo`` to ``hi`` non-empty strings."""
        if (not isinstance(value, list) or not lo <= len(value) <= hi
                or not all(isinstance(c, str) and c for c in value)):
            raise self.fail(name, f"a list of {lo} to {hi} names", value)
        return list(value)


def depth(value: Any) -> int:
    """How deeply ``value`` nests JSON objects and lists (a scalar is 0)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest



__all__ = ["Fields", "depth", "short"]
