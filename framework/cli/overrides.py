"""Command-line checks that run before Hydra composes anything.

Hydra reports an unknown config-group option as a multi-line listing; rnnlab answers with one line
and the closest name instead ("unknown cell 'lstmm'; did you mean 'lstm'? available: ...").
Plugins that have no YAML file in ``conf/`` (for example from an installed package's entry point)
are offered to Hydra as structured configs built from their schema's defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable
from typing import Any

from framework import ROOT
from framework.cli.console import FORCED_FULL_ERROR, debug_mode
from framework.errors import ConfigError, PluginError
from framework.plugins import load_plugins
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
                    raise PluginError(f"unknown experiment {name!r}{hint} available: "
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


def known_keys() -> list[str]:
    """Every dotted config key rnnlab knows (sections, and the options of all plugins)."""
    from framework.training.config import SECTIONS

    keys = ["seed", "dtype", "resume", "experiment", *SECTIONS, *REGISTRIES]
    for section, schema in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(schema)]
    for group, registry in REGISTRIES.items():
        for name in registry.names():
            schema = registry.schema(name)
            if schema is not None:
                keys += [f"{group}.{f.name}" for f in dataclasses.fields(schema)]
    return sorted(set(keys))


def hydra_error_message(exc: BaseException,
                        keys: Callable[[], list[str]] = known_keys) -> str:
    """One line for an error Hydra raises while parsing overrides or composing the config."""
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    if key and "not in struct" in str(cause):  # a misspelt key such as train.stepz=5
        close = difflib.get_close_matches(str(key), keys(), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown config key '{key}'{hint} (--cfg job lists the keys)"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    return "; ".join(lines) or type(exc).__name__


def run_hydra(entry: Callable[[], Any], keys: Callable[[], list[str]] = known_keys) -> Any:
    """Call a ``@hydra.main`` function; Hydra's override/composition errors become ConfigError.

    Hydra prints those errors itself over several lines and exits 1; with HYDRA_FULL_ERROR set it
    raises them instead, which lets rnnlab report one line.  In debug mode they stay tracebacks.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if debug_mode():
        os.environ["HYDRA_FULL_ERROR"] = "1"
        return entry()
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ.update({"HYDRA_FULL_ERROR": "1", FORCED_FULL_ERROR: "1"})
    try:
        return entry()
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(hydra_error_message(exc, keys)) from None
    finally:
        os.environ.pop(FORCED_FULL_ERROR, None)
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
