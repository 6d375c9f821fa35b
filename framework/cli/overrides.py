"""Command-line checks that run before Hydra composes anything, and Hydra's errors as one line.

Hydra reports an unknown config-group option as a multi-line listing; rnnlab answers with one line
and the closest name instead ("unknown cell 'lstmm'; did you mean 'lstm'? available: ...").
A plugin's YAML file in ``conf/`` is optional: plugins without one are offered to Hydra as
configs built from their schema's defaults, and so are the ``train.*`` options of the feeds and
lr schedules (the ``train_options`` entry of conf/config.yaml's defaults).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable
from typing import Any

from framework import ROOT
from framework.cli import groups
from framework.cli.console import FORCED_FULL_ERROR, debug_mode
from framework.errors import ConfigError, PluginError
from framework.registry import REGISTRIES, TRAIN_PLUGINS, Registry, field_default

CONF = ROOT / "conf"
EXPERIMENTS = ROOT / "experiments"
TRAIN_OPTIONS = "train_options"  # the generated config of the feeds' and schedules' options
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


def selectors() -> dict[str, Registry]:
    """The config key that chooses a plugin -> its registry (``cell``, ``train.feed``, ...)."""
    return {r.select: r for r in (*REGISTRIES.values(), *TRAIN_PLUGINS.values())}


def unknown_plugin(registry: Registry, name: str) -> PluginError:
    """The one-line error for an unknown name, saying why a file that looks like it is unused."""
    hint = groups.not_loaded_hint(registry, name)
    return PluginError(registry.unknown_message(name) + (f"; {hint}" if hint else ""))


def precheck_overrides(argv: list[str]) -> None:
    """Reject unknown plugin and experiment names with a one-line error."""
    choosers = selectors()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if key in choosers:
            registry = choosers[key]
            for name in _values(value):
                if name not in registry:
                    raise unknown_plugin(registry, name)
        elif key == "experiment":
            known = experiment_names()
            for name in _values(value):
                if name not in known and name != "null":
                    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    raise PluginError(f"unknown experiment {name!r}{hint} available: "
                                      f"{', '.join(known)}")


def train_option_defaults() -> dict[str, Any]:
    """``{key: default}`` of every train.* option the feeds and lr schedules declare."""
    from framework.training.config import train_plugin_fields

    values = {key: field_default(f) for key, f in train_plugin_fields().items()}
    return {key: "???" if v is dataclasses.MISSING else v for key, v in values.items()}


def store_plugin_configs() -> None:
    """Give Hydra what the plugins bring: a config for every registered plugin without a YAML
    file in conf/, the train.* options of the feeds and schedules, and the --help listing.

    Every entry point calls this before Hydra composes a config."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, registry in REGISTRIES.items():
        for name in registry.names():
            if not (CONF / group / f"{name}.yaml").is_file():
                store.store(group=group, name=name, node=registry.defaults(name))
    store.store(name=TRAIN_OPTIONS, node={"train": train_option_defaults()})
    groups.register_resolver()


def known_keys() -> list[str]:
    """Every dotted config key rnnlab knows (sections, and the options of all plugins)."""
    from framework.training.config import SECTIONS, train_plugin_fields

    keys = ["seed", "dtype", "resume", "experiment", *SECTIONS, *REGISTRIES]
    for section, schema in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(schema)]
    keys += [f"train.{key}" for key in train_plugin_fields()]
    for group, registry in REGISTRIES.items():
        for name in registry.names():
            keys += [f"{group}.{key}" for key in ("name", *registry.option_names(name))]
    return sorted(set(keys))


def unknown_key_message(key: str, parent: Any = None) -> str:
    """One line for a key the config does not have; ``parent`` is the node it was looked up in.

    In a plugin group the message names the chosen plugin and lists its options. The suggestion
    is the closest key that exists there, never the key as typed.
    """
    section, _, option = key.rpartition(".")
    registry = REGISTRIES.get(section)
    name = parent.get("name") if hasattr(parent, "get") and hasattr(parent, "keys") else None
    if registry is not None and isinstance(name, str) and name in registry:
        return registry.no_option_message(name, option)
    if hasattr(parent, "keys"):
        candidates = [f"{section}.{k}" if section else str(k) for k in parent.keys()]
    else:
        candidates = known_keys()
    candidates = [k for k in candidates if k != key]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown config key '{key}'{hint} (--cfg job lists the keys)"


def hydra_error_message(exc: BaseException) -> str:
    """One line for an error Hydra raises while parsing overrides or composing the config."""
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    if key and "not in struct" in str(cause):  # a misspelt key such as train.stepz=5
        return unknown_key_message(str(key), getattr(cause, "parent_node", None))
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    return "; ".join(lines) or type(exc).__name__


def run_hydra(entry: Callable[[], Any]) -> Any:
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
        raise ConfigError(hydra_error_message(exc)) from None
    finally:
        os.environ.pop(FORCED_FULL_ERROR, None)
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
