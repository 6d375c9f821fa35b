"""Plugin discovery: fills the registries when first read (a kind's built-ins, then plugin files).

Plugins come from three places:

1. The framework's built-in modules of each kind (clipping, samplers, optimizers, lr schedules,
   attentions, decoders, feeds, tokenizers, tasks), which each registry names: they are imported
   the first time that registry is read or registered into (:func:`load_builtins`), so a
   command imports the built-ins of the kinds it uses only (a generation command no optimizer).
2. Plugin folders: ``cells/`` and ``datasets/`` next to ``framework/``, then every folder named in
   ``RNNLAB_PLUGIN_PATH`` (separated by ``os.pathsep``). Every ``*.py`` file there not starting
   with ``_`` is loaded by path, and may register into any registry. Files are loaded under
   private module names (``rnnlab_plugins.cells.rnn``; ``rnnlab_plugins.<folder>_<hash>.<file>``
   for the path's folders), never as top-level modules, so a plugin file neither shadows nor is
   shadowed by an installed package (Hugging Face's ``datasets``, or a file named like one).
3. Installed packages with entry points in a registry's group (``rnnlab.cells``,
   ``rnnlab.datasets``, ``rnnlab.clip``, ``rnnlab.samplers``, ``rnnlab.optimizers``,
   ``rnnlab.feeds``, ``rnnlab.lr_schedules``, ``rnnlab.tasks``, ``rnnlab.tokenizers``,
   ``rnnlab.attentions``, ``rnnlab.decoders``). Loading one may register by decorator; if it
   does not, the loaded object is registered under the entry point's name.

Registries call :func:`load_builtins` (their own kind) and :func:`ensure_loaded` (2 and 3, whose
files may register into any registry, so all of them) on every read; :func:`load_plugins` scans
again, picking up folders and files added since (tests, notebooks). Discovery sits below the
registries: each registry that fills itself this way hands itself to :func:`watch` when it is
created, so this module never imports :mod:`framework.registry` (the built-in modules it imports
by name do).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import signal
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from framework import ROOT
from framework.errors import PluginError

PATH_ENV = "RNNLAB_PLUGIN_PATH"
FOLDERS = ("cells", "datasets")  # the repository's own plugin folders
_PACKAGE = "rnnlab_plugins"
_state = {"loaded": False, "loading": False}


class Discovered(Protocol):
    """What discovery needs of a registry: its entry-point group and a way to add to it."""

    entry_points: str | None
    builtins: tuple[str, ...]  # the framework modules that register its built-in plugins
    builtins_loaded: bool

    def registered(self, name: str) -> bool:
        """Whether ``name`` is registered already (without running discovery)."""
        ...

    def add(self, name: str, obj: Any) -> None: ...


_watched: list[Discovered] = []  # every registry discovery fills, in creation order


def watch(registry: Discovered) -> None:
    """Have discovery fill ``registry`` from its entry-point group too."""
    _watched.append(registry)


def load_builtins(registry: Discovered) -> None:
    """Import the built-in modules of ``registry``, once: before its first read and before
    anything else registers into it, so that a plugin file or package registering a built-in
    name meets it (it replaces it with ``replace=True``, else it is told the name is taken),
    as when every built-in module was imported first."""
    if registry.builtins_loaded:
        return
    registry.builtins_loaded = True  # first: the modules register into this registry
    for module in registry.builtins:
        importlib.import_module(module)


def ensure_loaded() -> None:
    """Run discovery unless it ran already (or is running: plugin files read registries too)."""
    if not (_state["loaded"] or _state["loading"]):
        load_plugins()


def load_plugins() -> None:
    """Import every plugin folder file and entry point not imported yet (the built-in modules
    of a kind are imported when its registry is first used: :func:`load_builtins`)."""
    _state["loading"] = True
    try:
        for folder in plugin_folders():
            load_folder(folder)
        load_entry_points()
        _state["loaded"] = True
    finally:
        _state["loading"] = False


def plugin_folders() -> list[Path]:
    """``cells/``, ``datasets/``, then the folders of ``RNNLAB_PLUGIN_PATH`` in order."""
    folders = [ROOT / name for name in FOLDERS]
    for part in os.environ.get(PATH_ENV, "").split(os.pathsep):
        if not part.strip():
            continue
        folder = Path(part).expanduser()
        if not folder.is_dir():
            raise PluginError(f"{PATH_ENV} names {part!r}, which is not a directory; "
                              f"fix or unset {PATH_ENV}")
        folders.append(folder)
    return folders


def _namespace(name: str) -> None:
    """Create an empty package module so plugin modules have a parent (pickling, dataclasses)."""
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__path__ = []  # a package with no import path: nothing can be imported from it
        sys.modules[name] = module


def package_name(folder: Path) -> str:
    """The private package a folder's files are loaded into."""
    folder = folder.resolve()
    if folder.parent == ROOT.resolve() and folder.name in FOLDERS:
        return f"{_PACKAGE}.{folder.name}"
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() else "_" for c in folder.name) or "folder"
    return f"{_PACKAGE}.{safe}_{digest}"  # two folders of the same name never collide


LOAD_SECONDS = 60  # a plugin file or entry point that takes longer to import is reported


@contextlib.contextmanager
def _loading(what: str) -> Iterator[None]:
    """Load one plugin: an exit, an error or a hang while it imports is a one-line PluginError
    naming it (a plugin that calls sys.exit must not end the command as if it had succeeded)."""
    def hung(signum: int, frame: Any) -> None:
        raise PluginError(f"{what} took over {LOAD_SECONDS} s to import and was stopped; fix or "
                          f"remove it")

    alarm = (threading.current_thread() is threading.main_thread()
             and hasattr(signal, "SIGALRM") and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    previous = signal.signal(signal.SIGALRM, hung) if alarm else None
    if alarm:
        signal.setitimer(signal.ITIMER_REAL, LOAD_SECONDS)
    try:
        yield
    except PluginError:
        raise
    except SystemExit as exc:
        raise PluginError(f"{what} called sys.exit({exc.code!r}) while importing; a plugin must "
                          f"not end the command") from None
    except Exception as exc:
        raise PluginError(f"{what} failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def load_folder(folder: Path) -> list[str]:
    """Load every ``*.py`` plugin file of ``folder``; returns the module names loaded now."""
    loaded: list[str] = []
    folder = Path(folder)
    if not folder.is_dir():
        return loaded
    package = package_name(folder)
    _namespace(_PACKAGE)
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
            with _loading(f"plugin file {path}"):
                spec.loader.exec_module(module)
        except PluginError:
            del sys.modules[module_name]
            raise
        loaded.append(module_name)
    return loaded


_installed: dict[str, Any] = {"key": None, "entry_points": None, "declared": None}
GROUP_PREFIX = "rnnlab."  # every registry's entry-point group starts so


def _path_state() -> tuple[tuple[str, int], ...]:
    """``sys.path`` with each folder's modification time: installing or removing a package
    adds or removes an entry (its dist-info folder, a .pth file) in one of these folders."""
    state = []
    for entry in sys.path:
        try:
            state.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            state.append((entry, -1))
    return tuple(state)


def installed_entry_points() -> Any:
    """The installed packages' entry points; the packages are scanned again only when
    ``sys.path`` or one of its folders changed (a command reads the registries several times,
    and each scan reads every installed package's metadata)."""
    from importlib.metadata import entry_points

    key = _path_state()
    if _installed["key"] != key or _installed["entry_points"] is None:
        _installed.update(key=key, entry_points=entry_points(), declared=None)
    return _installed["entry_points"]


def _may_declare_entry_points() -> bool:
    """False when no package installed on ``sys.path`` declares an entry point in an
    ``rnnlab.*`` group, which is the usual case; True when one may.

    Reading the packages' ``entry_points.txt`` files for the group prefix takes about 2 ms,
    where importing :mod:`importlib.metadata` and scanning with it takes about 20 ms, a
    twentieth of a short command's start.  Whatever this cannot rule out counts as a yes (then
    the packages are scanned properly): a zip file or an egg on the path, a distribution finder
    other than Python's own."""
    if any(hasattr(finder, "find_distributions") and finder is not importlib.machinery.PathFinder
           for finder in sys.meta_path):
        return True
    for entry in sys.path:
        root = entry or "."
        if os.path.basename(root).lower().endswith(".egg"):
            return True
        try:
            names = os.listdir(root)
        except NotADirectoryError:  # a zip file: its packages are inside it
            return True
        except OSError:  # not there (or not readable): no package to find in it
            continue
        for name in names:
            if not name.lower().endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(root, name, "entry_points.txt"), encoding="utf-8",
                          errors="replace") as f:
                    if GROUP_PREFIX in f.read():
                        return True
            except OSError:  # no entry points (or an egg-info file)
                continue
    return False


def load_entry_points() -> None:
    """Load the entry points of every watched registry's group not registered yet."""
    key = _path_state()
    if _installed["key"] != key:
        _installed.update(key=key, entry_points=None, declared=None)
    if _installed["declared"] is None:
        _installed["declared"] = _may_declare_entry_points()
    if not _installed["declared"]:
        return
    installed = installed_entry_points()  # one scan of the installed packages for every group
    for registry in _watched:
        if not registry.entry_points:
            continue
        for ep in installed.select(group=registry.entry_points):
            load_builtins(registry)  # a built-in keeps its name, as when it was imported first
            if registry.registered(ep.name):
                continue
            with _loading(f"entry point '{ep.name}' ({ep.value}) in group "
                          f"{registry.entry_points}"):
                obj = ep.load()
            if not registry.registered(ep.name) and not isinstance(obj, types.ModuleType):
                registry.add(ep.name, obj)
