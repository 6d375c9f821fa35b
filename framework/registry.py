"""A tiny registry of named plugins, one instance per plugin kind.

Registering is one decorator, and the decorator can carry the plugin's config schema (a dataclass),
so a plugin and the options it accepts are declared in one place::

    @CELLS.register("lstm", schema=LSTMConfig)
    class LSTM(Cell): ...

Plugins are built from a validated config node with :meth:`Registry.build`, which passes every
schema field except ``name`` as a keyword argument.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from framework.errors import ConfigError, PluginError


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    schema: type | None
    origin: str  # "module.qualname" of the definition, for error messages


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _same_definition(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` come from the same source definition.

    A plugin file can be imported twice under different module names (by the folder loader and by
    ``from cells.rnn import ...``); that re-registration is harmless and must not be an error.
    """
    if a is b:
        return True
    try:
        return (
            a.__qualname__ == b.__qualname__
            and inspect.getsourcefile(a) == inspect.getsourcefile(b)
        )
    except (AttributeError, TypeError):
        return False


class Registry:
    """Maps names to plugin objects of one kind (cell, dataset, clip, sampler, optimizer)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, schema: type | None = None, replace: bool = False
    ) -> Callable[[Any], Any]:
        """Decorator form of :meth:`add`; returns the object unchanged."""

        def decorator(obj: Any) -> Any:
            self.add(name, obj, schema=schema, replace=replace)
            return obj

        return decorator

    def add(
        self, name: str, obj: Any, *, schema: type | None = None, replace: bool = False
    ) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise PluginError(
                f"invalid {self.kind} name {name!r}; use letters, digits, '_' or '-'"
            )
        if schema is not None and not dataclasses.is_dataclass(schema):
            raise PluginError(f"schema of {self.kind} '{name}' must be a dataclass, got {schema!r}")
        old = self._entries.get(name)
        if old is not None and not replace and not _same_definition(old.obj, obj):
            raise PluginError(
                f"{self.kind} '{name}' is already registered by {old.origin}; "
                f"choose another name or register with replace=True"
            )
        self._entries[name] = Entry(name, obj, schema, _origin(obj))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise PluginError(self.unknown_message(name)) from None

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def schema(self, name: str) -> type | None:
        return self.entry(name).schema

    def unknown_message(self, name: str) -> str:
        available = ", ".join(self.names()) or "(none registered)"
        close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        # repr: a name with a newline or quote must not break the one-line message
        return f"unknown {self.kind} {str(name)!r}{hint} available: {available}"

    def validate(self, node: Mapping[str, Any]) -> Any:
        """Check a config node (with a ``name`` key) against the plugin's schema.

        Returns the schema dataclass instance; wrong types and out-of-range values (checked in the
        schema's ``__post_init__``) become one-line :class:`ConfigError` messages.
        """
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        name = node.get("name")
        entry = self.entry(str(name))
        if entry.schema is None:
            return dict(node)
        try:
            base = OmegaConf.structured(entry.schema)
            merged = OmegaConf.merge(base, OmegaConf.create(dict(node)))
            return OmegaConf.to_object(merged)
        except OmegaConfBaseException as exc:
            raise ConfigError(describe_omegaconf_error(exc, self.kind)) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.kind} '{name}': {exc}") from None

    def build(self, node: Mapping[str, Any] | Any, **extra: Any) -> Any:
        """Validate ``node`` and call the plugin with its options as keyword arguments."""
        cfg = node if dataclasses.is_dataclass(node) else self.validate(node)
        options = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        name = options.pop("name")
        return self.get(name)(**options, **extra)


def describe_omegaconf_error(exc: Exception, section: str = "") -> str:
    """First line of an OmegaConf error, prefixed with the dotted key it is about."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    key = ".".join(k for k in (section, getattr(exc, "full_key", None) or "") if k)
    return f"{key}: {first}" if key else first


CELLS = Registry("cell")
DATASETS = Registry("dataset")
CLIPS = Registry("clip")
SAMPLERS = Registry("sampler")
OPTIMIZERS = Registry("optimizer")
TASKS = Registry("task")

# Config group name -> registry; the group names are the public command-line interface.
REGISTRIES: dict[str, Registry] = {
    "task": TASKS,
    "cell": CELLS,
    "dataset": DATASETS,
    "clip": CLIPS,
    "sampler": SAMPLERS,
    "optimizer": OPTIMIZERS,
}

__all__ = ["CELLS", "CLIPS", "DATASETS", "OPTIMIZERS", "REGISTRIES", "SAMPLERS", "TASKS",
           "Registry"]
