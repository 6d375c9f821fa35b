"""Command-line checks that run before Hydra composes anything, and Hydra's errors as one line.

Hydra reports an unknown config-group option as a multi-line listing; rnnlab answers with one line
and the closest name instead ("unknown cell 'lstmm'; did you mean 'lstm'? available: ...").
A plugin's YAML file in ``conf/`` is optional: plugins without one are offered to Hydra as
configs built from their schema's defaults, and so are the ``train.*`` options of the feeds and
lr schedules (the ``train_options`` entry of conf/config.yaml's defaults).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from framework import ROOT
from framework.cli import groups
from framework.cli.console import command_name
from framework.errors import FORCED_FULL_ERROR, ConfigError, PluginError, StorageError, debug_mode
from framework.registry import REGISTRIES, TRAIN_PLUGINS, Registry, field_default

CONF = ROOT / "conf"
EXPERIMENTS = ROOT / "experiments"
TRAIN_OPTIONS = "train_options"  # the generated config of the feeds' and schedules' options
# Causes that mean "this disk cannot be written here", not a bug.
# A folder that cannot be written: full, read-only, forbidden, or a path through or onto a file.
# (ENOENT: a folder no one may create, such as /proc/x; the jobs report their own paths.)
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                   errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EIO, errno.ENOENT}
_SWEEP_CALL = re.compile(r"^\s*(choice|glob|range|interval|tag|shuffle|sort)\s*\((.*)\)\s*$")


# Keys whose values are free text (prompts, names, paths): given as one shell argument they are
# taken literally -- commas, quotes, brackets, "=", non-ASCII letters -- instead of being read by
# Hydra's override grammar.  ``${...}`` stays an interpolation; ``null`` and an empty value keep
# their meaning; an already quoted value is left to Hydra; with -m a comma still separates sweep
# values.
FREE_TEXT_KEYS = frozenset({
    "prompt", "text", "checkpoint", "resume", "artifact", "dataset.path",
    "mlflow.run_name", "mlflow.experiment_name", "mlflow.tracking_uri",
    "hydra.run.dir", "hydra.sweep.dir",
})
_MULTIRUN_FLAGS = ("-m", "--multirun")


def hydra_quote(text: str, quote: str = "'") -> str:
    """``text`` as a quoted Hydra override value that Hydra reads back as ``text``.

    In Hydra's quoted strings only backslashes right before the quote character (or the closing
    quote) are escapes: a run of n of them before a quote is written as 2n + 1, at the end as 2n.
    """
    body = re.sub(r"(\\*)" + quote, lambda m: "\\" * (2 * len(m.group(1)) + 1) + quote, text)
    trailing = len(body) - len(body.rstrip("\\"))
    return quote + body + "\\" * trailing + quote


def _is_quoted(value: str) -> bool:
    return len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]


def quote_free_text(argv: list[str]) -> list[str]:
    """``argv`` with the values of :data:`FREE_TEXT_KEYS` rewritten as quoted Hydra strings."""
    multirun = any(arg in _MULTIRUN_FLAGS for arg in argv)
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if (arg.startswith("-") or not eq or key.lstrip("+") not in FREE_TEXT_KEYS
                or value == "" or value.lower() == "null" or _is_quoted(value)
                or (multirun and ("," in value or _SWEEP_CALL.match(value)))):
            out.append(arg)
        else:
            out.append(f"{key}={hydra_quote(value)}")
    return out


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
    """Reject unknown options, plugin and experiment names with a one-line error."""
    check_flags(argv, command_name())
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
                    from framework.training.config import did_you_mean

                    raise PluginError(f"unknown experiment {name!r}{did_you_mean(name, known)} "
                                      f"(available: {', '.join(known)})")


def train_option_defaults() -> dict[str, Any]:
    """``{key: default}`` of every train.* option the feeds and lr schedules declare."""
    from framework.training.config import train_plugin_fields

    values = {key: field_default(f) for key, f in train_plugin_fields().items()}
    return {key: "???" if v is dataclasses.MISSING else v for key, v in values.items()}


def default_groups(config_name: str) -> set[str]:
    """The config groups (and plain configs) named in the defaults list of conf/<name>.yaml."""
    import yaml

    try:  # libyaml's safe loader when PyYAML was built with it: a third of the time
        from yaml import CSafeLoader as SafeLoader
    except ImportError:
        from yaml import SafeLoader

    text = (CONF / f"{config_name}.yaml").read_text(encoding="utf-8")
    named = set()
    for entry in (yaml.load(text, Loader=SafeLoader) or {}).get("defaults", []):
        key = next(iter(entry)) if isinstance(entry, dict) else str(entry)
        named.add(key.removeprefix("override ").lstrip("/"))
    return named


def store_plugin_configs(config_name: str | None = None) -> None:
    """Give Hydra what the plugins bring: a config for every registered plugin without a YAML
    file in conf/, the train.* options of the feeds and schedules, and the --help listing.

    Every entry point calls this before Hydra composes a config. ``config_name``: only what the
    defaults list of conf/<config_name>.yaml names (generation needs its samplers, not the
    options of every dataset: building those nodes is a tenth of its start-up); None: all."""
    from hydra.core.config_store import ConfigStore

    from framework.registry import DECODERS

    wanted = None if config_name is None else default_groups(config_name)
    store = ConfigStore.instance()
    # The decoder group is read by generate and predict only, so it is not in REGISTRIES.
    for group, registry in (*REGISTRIES.items(), ("decoder", DECODERS)):
        if wanted is not None and group not in wanted:
            continue
        for name in registry.names():
            if not (CONF / group / f"{name}.yaml").is_file():
                store.store(group=group, name=name, node=registry.defaults(name))
    if wanted is None or TRAIN_OPTIONS in wanted:
        store.store(name=TRAIN_OPTIONS, node={"train": train_option_defaults()})
    groups.register_resolver()


def known_keys() -> list[str]:
    """Every dotted config key rnnlab knows (sections, and the options of all plugins)."""
    from framework.training.config import SCALARS, SECTIONS, train_plugin_fields

    keys = [*SCALARS, "experiment", *SECTIONS, *REGISTRIES]
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
    from framework.training.config import did_you_mean, unknown_key_error

    if not did_you_mean(key, candidates):  # the same option name in another section
        candidates = [k for k in known_keys() if k.rpartition(".")[2] == key] or candidates
    return str(unknown_key_error(key, candidates))


def hydra_error_message(exc: BaseException) -> str:
    """One line for an error Hydra raises while parsing overrides or composing the config."""
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    if key and "not in struct" in str(cause):  # a misspelt key such as train.stepz=5
        return unknown_key_message(str(key), getattr(cause, "parent_node", None))
    text = str(exc)
    override = getattr(exc, "override", None)
    ambiguous = re.search(r"Ambiguous value for argument '(.*)'", text)
    if ambiguous:
        override = ambiguous.group(1)
    if override and "=" in override:
        return _override_message(override, text, ambiguous is not None)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    return "; ".join(lines) or type(exc).__name__


def _override_message(override: str, text: str, ambiguous: bool) -> str:
    """An override Hydra's grammar refused: what is wrong, and the quoted form that works."""
    import shlex

    key, _, value = override.partition("=")
    # 'key="value"': double quotes for Hydra inside single quotes for the shell.
    fixed = shlex.quote(f'{key}={hydra_quote(value, chr(34))}')
    if ambiguous:
        return (f"{override!r}: a comma separates sweep values; to keep the value one string "
                f"quote it for Hydra: {fixed} (or write a list as {key}=[a,b], or add -m to "
                f"sweep)")
    lines = [line for line in text.splitlines() if line.strip()]
    # Hydra points at the bad character with a caret under the override; say it in words.
    caret = next((line for line in lines if line.strip() == "^"), None)
    if caret is not None and lines[0].startswith("LexerNoViableAltException: "):
        at = len(caret) - len("LexerNoViableAltException: ") - 1
        where = (f"the character {override[at]!r} at position {at + 1} is not allowed there"
                 if 0 <= at < len(override) else "Hydra cannot read it")
    else:
        detail = [line.strip() for line in lines
                  if line.strip() != "^" and not line.startswith(("See https", "Error parsing"))]
        where = detail[0].split(" expecting ")[0] if detail else "Hydra cannot read it"
    return (f"cannot read the override {override!r} ({where}); quote the value for Hydra: "
            f"{fixed}")


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (itself, or its cause/context chain), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# Hydra's command-line flags: those that take a value, and those that do not.
_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn",
                     "--config-name", "-cd", "--config-dir", "-sc", "--shell-completion",
                     "--experimental-rerun"}
_FLAGS = {"-h", "--help", "--hydra-help", "--version", "--resolve", "-m", "--multirun", "-r",
          "--run", "-i", "--info"}


def check_flags(argv: list[str], command: str) -> None:
    """Refuse an option Hydra does not know (``--foo``) in one line, before Hydra prints its
    usage; ``key=value`` overrides are not options."""
    expect_value = False
    for arg in argv:
        if expect_value:
            expect_value = False
            continue
        if not arg.startswith("-") or arg == "-":
            continue
        flag = arg.split("=", 1)[0]
        if flag in _FLAGS_WITH_VALUE:
            expect_value = "=" not in arg
        elif flag not in _FLAGS:
            raise ConfigError(f"{command}: unknown option {arg!r}; --help lists the options "
                              f"(and --hydra-help Hydra's); settings are key=value")


def _lazy_help() -> None:
    """Make ``--help`` compute only what its template shows.

    Hydra's help fills every ``$NAME`` of the template before substituting, and two of them list
    every option of every config group (one config composition per option: about 100 of them,
    most of ``--help``'s time), although rnnlab's template (conf/hydra/help/rnnlab.yaml) uses
    neither. The same text, with each ``$NAME`` computed when the template asks for it.
    """
    import string

    from hydra._internal.hydra import Hydra
    from omegaconf import OmegaConf

    def get_help(self: Any, help_cfg: Any, cfg: Any, args_parser: Any, resolve: bool) -> str:
        fill = {
            "FLAGS_HELP": lambda: self.format_args_help(args_parser),
            "HYDRA_CONFIG_GROUPS": lambda: self.format_config_groups(
                lambda x: x.startswith("hydra/") or x == "hydra"),
            "APP_CONFIG_GROUPS": lambda: self.format_config_groups(
                lambda x: not (x.startswith("hydra/") or x == "hydra")),
            "CONFIG": lambda: OmegaConf.to_yaml(cfg, resolve=resolve),
        }

        class OnDemand(dict):
            def __missing__(self, key: str) -> str:
                return fill[key]()

        return string.Template(help_cfg.template).substitute(OnDemand())

    Hydra.get_help = get_help


def run_hydra(entry: Callable[[], Any]) -> Any:
    """Call a ``@hydra.main`` function; Hydra's override/composition errors become ConfigError.

    Hydra prints those errors itself over several lines and exits 1; with HYDRA_FULL_ERROR set it
    raises them instead, which lets rnnlab report one line.  In debug mode they stay tracebacks.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    argv = sys.argv
    command = command_name()
    if "--help" in argv[1:] or "-h" in argv[1:]:
        _lazy_help()
    # hydra.main reads the overrides here; the first item names the command in Hydra's usage line
    sys.argv = [command, *quote_free_text(argv[1:])]
    if debug_mode():
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            return entry()
        finally:
            sys.argv = argv
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ.update({"HYDRA_FULL_ERROR": "1", FORCED_FULL_ERROR: "1"})
    try:
        return entry()
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(hydra_error_message(exc)) from None
    except (OSError, ValueError) as exc:
        # Hydra creates the output folder, its .hydra/ and log file before the job starts: a
        # read-only or full disk there is an OSError (wrapped in a ValueError by logging).
        cause = _os_error_in(exc)
        if cause is None or cause.errno not in _STORAGE_ERRNOS:
            raise
        setting = "hydra.sweep.dir" if {"-m", "--multirun"} & set(argv[1:]) else "hydra.run.dir"
        raise StorageError.from_os_error(
            "write", cause.filename or os.getcwd(), cause,
            f"set {setting}= to a writable folder with free space, or run from one") from None
    finally:
        sys.argv = argv
        os.environ.pop(FORCED_FULL_ERROR, None)
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
