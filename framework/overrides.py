"""Command-line checks that run before Hydra composes anything.

Hydra reports an unknown config-group option as a multi-line listing; rnnlab answers with one line
and the closest name instead ("unknown cell 'lstmm'; did you mean 'lstm'? available: ...").
Plugins that have no YAML file in ``conf/`` (for example from an installed package's entry point)
are offered to Hydra as structured configs built from their schema's defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

from framework.errors import PluginError
from framework.plugins import ROOT, load_plugins
from framework.registry import REGISTRIES

CONF = ROOT / "conf"
EXPERIMENTS = ROOT / "experiments"
_SWEEP_CALL = re.compile(r"^\s*(choice|glob|range|interval|tag|shuffle|sort)\s*\((.*)\)\s*$")


def _values(text: str) -> list[str]:
    """The option names of ``group=value``: plain, comma-separated, or ``choice(a,b)``."""
    match = _SWEEP_CALL.match(text)
    if match:
        if match.group(1) not in ("choice", "shuffle", "sort"):
            return []  # glob/range/interval: nothing to check by name
        text = match.group(2)
    return [v.strip().strip("'\"") for v in text.split(",") if v.strip()]


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))


def precheck_overrides(argv: list[str]) -> None:
    """Reject unknown plugin and experiment names with a one-line error."""
    load_plugins()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if key in REGISTRIES:
            registry = REGISTRIES[key]
            for name in _values(value):
                if name not in registry:
                    raise PluginError(registry.unknown_message(name))
        elif key == "experiment":
            known = experiment_names()
            for name in _values(value):
                if name not in known and name != "null":
                    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    raise PluginError(f"unknown experiment '{name}'{hint} available: "
                                      f"{', '.join(known)}")


def store_plugin_configs() -> None:
    """Give Hydra a config for every registered plugin that has no YAML file in conf/."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, registry in REGISTRIES.items():
        for name in registry.names():
            if (CONF / group / f"{name}.yaml").is_file():
                continue
            schema = registry.schema(name)
            node: dict = {"name": name}
            if schema is not None:
                try:
                    node = dataclasses.asdict(schema())
                    node["name"] = name
                except TypeError:  # a schema field without a default: the user must set it
                    pass
            store.store(group=group, name=name, node=node)
