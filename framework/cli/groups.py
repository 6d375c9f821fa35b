"""What ``--help`` lists as the options of each group: the registries, so the two never disagree.

A YAML file in ``conf/<group>/`` that no plugin registers, or a plugin file outside the plugin
folders (a newcomer's guess: ``conf/sampler/mine.py``, ``framework/mine.py``), is not offered as
an option: ``--help`` and the unknown-name error say why and where the file belongs instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from framework import ROOT
from framework.registry import REGISTRIES, TRAIN_PLUGINS, Registry

CONF = ROOT / "conf"
WHERE = ("plugin files are loaded from cells/, datasets/, the folders named in "
         "RNNLAB_PLUGIN_PATH and installed entry points")
# A registry's decorator call with a literal name, as every plugin file has one.
_REGISTER = re.compile(r"\b([A-Z_]+)\.register\(\s*['\"]([A-Za-z0-9_-]+)['\"]")


def option_lines() -> list[str]:
    """``group: a, b, c`` for every plugin group, train-key plugin and other conf/ group."""
    lines = {group: ", ".join(registry.names()) for group, registry in REGISTRIES.items()}
    lines.update({f"train.{key}": ", ".join(registry.names())
                  for key, registry in TRAIN_PLUGINS.items()})
    for folder in sorted(p for p in CONF.iterdir() if p.is_dir()):
        if folder.name != "hydra" and folder.name not in REGISTRIES:
            lines[folder.name] = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    return [f"{group}: {options}" for group, options in sorted(lines.items())]


def orphan_configs() -> list[tuple[Path, Registry, str]]:
    """``conf/<group>/<name>.yaml`` files whose name no plugin registers."""
    return [(path, registry, path.stem)
            for group, registry in REGISTRIES.items()
            for path in sorted((CONF / group).glob("*.yaml")) if path.stem not in registry]


def _candidate_files() -> list[str]:
    """Where a newcomer may put a plugin file that is never loaded (paths as text: ``--help``
    reads them all, and os.walk is several times faster than Path.rglob)."""
    files = sorted(str(p) for p in ROOT.glob("*.py"))
    for folder in ("conf", "experiments", "framework"):
        found = []
        for parent, dirs, names in os.walk(ROOT / folder):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            found += [os.path.join(parent, n) for n in names if n.endswith(".py")]
        files += sorted(found)
    return files


def stray_plugins() -> list[tuple[Path, Registry, str]]:
    """Files outside the plugin folders that register a name no registry has."""
    from framework import registry as registries

    found = []
    for name_of_file in _candidate_files():
        try:
            with open(name_of_file, encoding="utf-8", errors="replace") as file:
                text = file.read()
        except OSError:
            continue
        if ".register(" not in text:  # most files: a substring test is 100x faster than the regex
            continue
        path = Path(name_of_file)
        for variable, name in _REGISTER.findall(text):
            registry = getattr(registries, variable, None)
            if isinstance(registry, Registry) and name not in registry:
                found.append((path, registry, name))
    return found


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def not_loaded_hint(registry: Registry, name: str) -> str:
    """Why ``name`` is not a plugin although a file suggests it is ("" when nothing does)."""
    yaml = [p for p, r, n in orphan_configs() if r is registry and n == name]
    strays = [p for p, r, n in stray_plugins() if r is registry and n == name]
    if not (yaml or strays):
        return ""
    parts = [f"{_rel(p)} configures it, but no plugin registers {registry.kind} '{name}'"
             for p in yaml]
    parts += [f"{_rel(p)} registers it, but is not in a plugin folder" for p in strays]
    return "; ".join(parts) + f" ({WHERE})"


def problem_lines() -> list[str]:
    """One line per file that looks like a plugin but is not one."""
    lines = [f"{_rel(p)}: no plugin registers {r.kind} '{n}'" for p, r, n in orphan_configs()]
    lines += [f"{_rel(p)}: registers {r.kind} '{n}' but is never loaded (not in a plugin folder)"
              for p, r, n in stray_plugins()]
    return lines


def listing() -> str:
    """The ``== Configuration groups ==`` section of ``--help``."""
    text = "\n".join(option_lines())
    problems = problem_lines()
    if problems:
        text += ("\n\nNot usable (" + WHERE + "):\n"
                 + "\n".join(f"  {line}" for line in problems))
    return text


def register_resolver() -> None:
    """``${rnnlab_groups:}`` in conf/hydra/help/rnnlab.yaml is :func:`listing`."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("rnnlab_groups", listing, replace=True)
