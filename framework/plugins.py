"""Plugin discovery: fills the registries from three places.

1. The framework's own modules (clipping, samplers, optimizers).
2. The plugin folders ``cells/`` and ``datasets/`` next to ``framework/``: every ``*.py`` file there
   (not starting with ``_``) is loaded by path, so dropping a file in registers it.  They are loaded
   under the private names ``rnnlab_plugins.cells.<file>`` / ``rnnlab_plugins.datasets.<file>``,
   never as a top-level ``datasets`` package, so Hugging Face's ``datasets`` is neither shadowed by
   rnnlab nor able to hide rnnlab's plugins.
3. Installed packages that declare entry points in the groups ``rnnlab.cells``, ``rnnlab.datasets``,
   ``rnnlab.clip``, ``rnnlab.samplers`` and ``rnnlab.optimizers``.  Loading the entry point may
   register by decorator; if it does not, the loaded object is registered under the entry point's
   name (with its ``schema`` attribute as config schema, if any).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

from framework import ROOT
from framework.errors import PluginError
from framework.registry import CELLS, CLIPS, DATASETS, OPTIMIZERS, SAMPLERS, TASKS, Registry

PLUGIN_FOLDERS: dict[str, Registry] = {"cells": CELLS, "datasets": DATASETS}
BUILTIN_MODULES = ("framework.nn.clip", "framework.nn.samplers", "framework.nn.optimizers",
                   "framework.tasks.lm", "framework.tasks.classify", "framework.tasks.forecast")
ENTRY_POINT_GROUPS: dict[str, Registry] = {
    "rnnlab.cells": CELLS,
    "rnnlab.datasets": DATASETS,
    "rnnlab.clip": CLIPS,
    "rnnlab.samplers": SAMPLERS,
    "rnnlab.optimizers": OPTIMIZERS,
    "rnnlab.tasks": TASKS,
}
_PACKAGE = "rnnlab_plugins"
_loaded = False


def load_plugins(root: Path | None = None) -> None:
    """Import every plugin once per process (later calls are free)."""
    global _loaded
    if _loaded and root is None:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for folder in PLUGIN_FOLDERS:
        load_folder((root or ROOT) / folder)
    load_entry_points()
    _loaded = True


def _namespace(name: str) -> None:
    """Create an empty package module so plugin modules have a parent (pickling, dataclasses)."""
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__path__ = []  # a package with no import path: nothing can be imported from it
        sys.modules[name] = module


def load_folder(folder: Path) -> list[str]:
    """Load every ``*.py`` plugin file of ``folder``; returns the module names loaded."""
    loaded = []
    if not folder.is_dir():
        return loaded
    _namespace(_PACKAGE)
    package = f"{_PACKAGE}.{folder.name}"
    _namespace(package)
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module_name = f"{package}.{path.stem}"
        if module_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"cannot load plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except PluginError:
            del sys.modules[module_name]
            raise
        except Exception as exc:
            del sys.modules[module_name]
            raise PluginError(
                f"plugin file {folder.name}/{path.name} failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        loaded.append(module_name)
    return loaded


def load_entry_points() -> None:
    for group, registry in ENTRY_POINT_GROUPS.items():
        for ep in entry_points(group=group):
            if ep.name in registry:
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"entry point '{ep.name}' ({ep.value}) in group {group} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if ep.name not in registry and not isinstance(obj, types.ModuleType):
                registry.add(ep.name, obj, schema=getattr(obj, "schema", None))
