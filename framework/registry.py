"""Registries of named plugins, one per kind; each plugin is built from its validated config.

A plugin registers with one decorator, which names it and gives its config schema (a dataclass)::

    @CELLS.register("lstm", schema=LSTMConfig)
    class LSTMCell(Cell): ...

The contract, the same for every kind:

- **Named once.** The decorator's name is the only spelling: the registry sets ``obj.name`` and
  ``obj.schema`` on the plugin, and gives the schema a ``name`` field defaulting to that name (a
  schema leaves ``name`` out; one that has it must default it to the registered name).
- **One schema.** The schema is the plugin's only list of options and defaults. Its
  ``__post_init__`` checks ranges and raises ValueError; :meth:`Registry.validate` turns that (and
  OmegaConf's type errors) into a one-line ConfigError naming the kind, the plugin and the key.
  Without ``schema=``, the plugin's inherited ``schema`` attribute is used (every cell gets
  :class:`~framework.nn.cell.CellConfig`), else a schema with no options.
- **Built from the validated instance.** :meth:`Registry.build` validates once and returns
  ``obj.from_config(cfg, **context)`` when the plugin defines ``from_config``, else
  ``obj(cfg, **context)``. :class:`Plugin` is the optional base class whose constructor keeps
  ``cfg`` and re-checks nothing.

The registries fill themselves the first time one is read (framework/plugins.py: built-in modules,
``cells/``, ``datasets/``, the folders in ``RNNLAB_PLUGIN_PATH``, entry points).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from framework import plugins
from framework.errors import ConfigError, PluginError


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered plugin: its name, the object, its author's schema and where it is from."""

    name: str
    obj: Any
    base: type | None  # the author's schema (None: the plugin has no options)
    origin: str  # "module.qualname" of the definition, for error messages

    @functools.cached_property
    def schema(self) -> type:
        """The plugin's schema with its ``name`` field, derived the first time it is asked for:
        a command reads the schemas of a few plugins, and deriving one is a dataclass
        creation (a quarter of the plugin loading that every command does)."""
        return _named_schema(self.name, self.obj, self.base)


class _SchemaAttribute:
    """The ``schema`` attribute of a registered plugin class: its entry's named schema, derived
    on first access (a subclass that inherits it gets the same schema, as any attribute)."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry

    def __get__(self, instance: Any, owner: type | None = None) -> type:
        return self.entry.schema


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


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default (calling its factory), or ``dataclasses.MISSING``."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _is_config(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _declared_schema(obj: Any) -> type | None:
    """The ``schema`` attribute ``obj`` declares or inherits; for a subclass of a registered
    plugin class, that plugin's author schema (its named one is not derived for this)."""
    for klass in obj.__mro__ if isinstance(obj, type) else ():
        if "schema" in vars(klass):
            value = vars(klass)["schema"]
            return value.entry.base if isinstance(value, _SchemaAttribute) else value
    return getattr(obj, "schema", None)


def _named_schema(name: str, obj: Any, schema: type | None) -> type:
    """``schema`` (the author's, checked by :meth:`Registry.add`) with a ``name`` field
    defaulting to ``name``; a schema with that field already is its own named schema."""
    if schema is None:
        derived = dataclasses.make_dataclass(
            f"{getattr(obj, '__name__', 'Plugin')}Config",
            [("name", str, dataclasses.field(default=name))])
        derived._plugin_schema = None
        return derived
    if "name" in {f.name for f in dataclasses.fields(schema)}:
        return schema
    params = schema.__dataclass_params__  # type: ignore[attr-defined]
    derived = dataclasses.make_dataclass(
        schema.__name__, [("name", str, dataclasses.field(default=name))], bases=(schema,),
        frozen=params.frozen,
        namespace={"__module__": schema.__module__, "__qualname__": schema.__qualname__,
                   "__doc__": schema.__doc__})
    derived._plugin_schema = schema
    return derived


class Registry:
    """Maps names to the plugins of one kind.

    ``kind`` names the plugins in messages ("cell 'rnn': ..."); ``select`` is the config key that
    chooses one (``cell``, ``train.feed``) and ``options`` the config node holding its options
    (``cell``, ``train``); ``entry_points`` is the entry-point group installed packages use and
    ``builtins`` the framework modules that register the built-in plugins of the kind (imported
    before the registry is first read or registered into, :func:`framework.plugins.load_builtins`).
    """

    def __init__(self, kind: str, *, select: str | None = None, options: str | None = None,
                 entry_points: str | None = None, builtins: tuple[str, ...] = (),
                 discover: bool = False) -> None:
        self.kind = kind
        self.select = select or kind
        self.options = options or kind
        self.entry_points = entry_points
        self.builtins = builtins
        self.builtins_loaded = not discover  # a registry made by hand has none to import
        self._discover = discover  # read access runs plugin discovery once (the global registries)
        self._entries: dict[str, Entry] = {}
        if discover:
            plugins.watch(self)

    # -- registering ----------------------------------------------------------------------------
    def register(
        self, name: str, *, schema: type | None = None, replace: bool = False
    ) -> Callable[[Any], Any]:
        """Decorator form of :meth:`add`; returns the object, now carrying ``name``/``schema``."""

        def decorator(obj: Any) -> Any:
            self.add(name, obj, schema=schema, replace=replace)
            return obj

        return decorator

    def add(
        self, name: str, obj: Any, *, schema: type | None = None, replace: bool = False
    ) -> None:
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise PluginError(
                f"invalid {self.kind} name {name!r}; use letters, digits, '_' or '-'"
            )
        if schema is not None and not (isinstance(schema, type)
                                       and dataclasses.is_dataclass(schema)):
            raise PluginError(f"schema of {self.kind} '{name}' must be a dataclass, got {schema!r}")
        if getattr(obj, "__module__", None) not in self.builtins:
            # A built-in name is taken before anything else registers (a built-in module
            # registering its own plugins, perhaps while imported by another, does not wait).
            plugins.load_builtins(self)
        old = self._entries.get(name)
        if old is not None and not replace and not _same_definition(old.obj, obj):
            raise PluginError(
                f"{self.kind} '{name}' is already registered by {old.origin}; "
                f"choose another name or register with replace=True"
            )
        entry = Entry(name, obj, self._author_schema(name, obj, schema), _origin(obj))
        # A class gets its named schema when it is first read; any other object now.
        named = _SchemaAttribute(entry) if isinstance(obj, type) else entry.schema
        for attr, value in (("name", name), ("schema", named), ("_registry", self)):
            try:
                setattr(obj, attr, value)
            except (AttributeError, TypeError):  # e.g. a builtin: it keeps no attributes
                pass
        self._entries[name] = entry

    def _author_schema(self, name: str, obj: Any, schema: type | None) -> type | None:
        """``schema``, or the one ``obj`` declares or inherits, as its author wrote it (without a
        ``name`` field this registry added); a ``name`` field it has must default to ``name``."""
        if schema is None:
            schema = _declared_schema(obj)
        if schema is not None:
            # A schema this registry derived for another plugin (an object registered twice):
            # start again from the author's schema.
            schema = schema.__dict__.get("_plugin_schema", schema)
        if schema is None:
            return None
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if "name" in fields and field_default(fields["name"]) != name:
            raise PluginError(
                f"schema {schema.__qualname__} of {self.kind} '{name}' defaults its name "
                f"field to {field_default(fields['name'])!r}; drop the field (the registry "
                f"fills it) or default it to {name!r}")
        return schema

    # -- reading --------------------------------------------------------------------------------
    def _read(self) -> dict[str, Entry]:
        if self._discover:
            plugins.load_builtins(self)
            plugins.ensure_loaded()
        return self._entries

    def registered(self, name: str) -> bool:
        """Whether ``name`` is registered, without running discovery (discovery asks this)."""
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._read())

    def __contains__(self, name: object) -> bool:
        return name in self._read()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._read())

    def entry(self, name: str) -> Entry:
        try:
            return self._read()[name]
        except (KeyError, TypeError):
            raise PluginError(self.unknown_message(name)) from None

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def schema(self, name: str) -> type:
        return self.entry(name).schema

    def option_fields(self, name: str) -> list[dataclasses.Field]:
        """The schema fields of plugin ``name`` that are options (all but ``name``)."""
        return [f for f in dataclasses.fields(self.schema(name)) if f.name != "name"]

    def option_names(self, name: str) -> list[str]:
        return [f.name for f in self.option_fields(name)]

    def defaults(self, name: str) -> dict[str, Any]:
        """``{"name": name, option: default}``; an option without a default is ``"???"``
        (OmegaConf's missing value: the user must set it)."""
        values = {f.name: field_default(f) for f in self.option_fields(name)}
        # A nested section (a dataclass default, e.g. task.encoder) as its plain mapping.
        return {"name": name, **{k: "???" if v is dataclasses.MISSING else
                                 dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                                 for k, v in values.items()}}

    def owns(self, obj: Any) -> bool:
        """Whether ``obj`` (or another import of the same definition) is registered here."""
        entry = self._entries.get(getattr(obj, "name", None))  # type: ignore[arg-type]
        return entry is not None and _same_definition(entry.obj, obj)

    # -- messages -------------------------------------------------------------------------------
    def unknown_message(self, name: object) -> str:
        available = ", ".join(self.names()) or "(none registered)"
        close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        # repr: a name with a newline or quote must not break the one-line message
        return f"unknown {self.select} {str(name)!r}{hint} (available: {available})"

    def no_option_message(self, name: str, key: str) -> str:
        """Plugin ``name`` has no option ``key``: its options, the closest, who has ``key``."""
        options = self.option_names(name)
        close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
        owners = [n for n in self.names() if n != name and key in self.option_names(n)]
        text = (f"{self.kind} '{name}' has no option '{key}' "
                f"(its options: {', '.join(options) or 'none'})")
        if close:
            text += f"; did you mean '{self.options}.{close[0]}'?"
        if owners:
            text += f"; {key} is an option of {', '.join(owners)}"
        return text

    def value_message(self, name: str, exc: Exception) -> str:
        """A schema's ValueError as one line naming the kind, the plugin and the key."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if text.split(" ", 1)[0] in self.option_names(name):
            text = f"{self.options}.{text}"  # "hidden_size must be ..." -> "cell.hidden_size ..."
        return f"{self.kind} '{name}': {text}"

    # -- validating and building ----------------------------------------------------------------
    def validate(self, node: Mapping[str, Any]) -> Any:
        """Check a config node (with a ``name`` key) against the plugin's schema.

        Returns the schema instance; unknown keys, wrong types and out-of-range values (checked
        by the schema's ``__post_init__``) become one-line :class:`ConfigError` messages.
        """
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        node = dict(node)
        name = node.get("name")
        entry = self.entry(name)  # type: ignore[arg-type]
        unknown = [str(k) for k in node if k != "name" and k not in self.option_names(entry.name)]
        if unknown:
            raise ConfigError(self.no_option_message(entry.name, unknown[0]))
        try:
            merged = OmegaConf.merge(OmegaConf.structured(entry.schema), OmegaConf.create(node))
            return OmegaConf.to_object(merged)
        except OmegaConfBaseException as exc:
            raise ConfigError(describe_omegaconf_error(exc, self.options)) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(self.value_message(entry.name, exc)) from None

    def build(self, node: Mapping[str, Any] | Any, /, **context: Any) -> Any:
        """The plugin built from ``node`` (a config mapping, or an already validated instance).

        ``context`` is what the kind passes besides the config (a feed gets the corpus).
        """
        cfg = node if _is_config(node) else self.validate(node)
        obj = self.get(cfg.name)
        from_config = getattr(obj, "from_config", None)
        if from_config is not None:
            return from_config(cfg, **context)
        return obj(cfg, **context)


class Plugin:
    """Optional base class of plugins: ``Plugin(cfg)`` keeps the validated config as ``self.cfg``.

    From Python, ``Plugin()`` takes the schema's defaults and ``Plugin(**options)`` validates the
    options exactly as a config would be (same one-line ConfigError). Subclasses read their options
    from ``self.cfg``; they repeat no defaults and no checks.
    """

    name: str = ""  # set by Registry.register
    schema: type | None = None  # set by Registry.register; a base class may give a default

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        self.cfg = configure(type(self), cfg, options)
        self.name = getattr(self.cfg, "name", None) or type(self).name


def configure(cls: Any, cfg: Any, options: dict[str, Any]) -> Any:
    """The validated config of plugin class ``cls``: ``cfg`` itself, or built from ``options``."""
    if cfg is not None:
        if options:
            raise TypeError(f"{cls.__name__} takes a config or keyword options, not both")
        if not _is_config(cfg):
            schema = getattr(cls, "schema", None)
            raise TypeError(f"{cls.__name__} takes its config ({getattr(schema, '__name__', '?')})"
                            f" or keyword options, got {cfg!r}")
        return cfg
    registry = getattr(cls, "_registry", None)
    if isinstance(registry, Registry) and registry.owns(cls):
        return registry.validate({"name": cls.name, **options})
    schema = getattr(cls, "schema", None)  # an unregistered subclass: the schema alone checks
    if schema is None:
        if options:
            raise TypeError(f"{cls.__name__} has no options, got {', '.join(options)}")
        return None
    return schema(**options)


def describe_omegaconf_error(exc: Exception, section: str = "") -> str:
    """First line of an OmegaConf error, prefixed with the dotted key it is about."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    key = ".".join(k for k in (section, getattr(exc, "full_key", None) or "") if k)
    return f"{key}: {first}" if key else first


CELLS = Registry("cell", entry_points="rnnlab.cells", discover=True)
DATASETS = Registry("dataset", entry_points="rnnlab.datasets", discover=True)
CLIPS = Registry("clip", entry_points="rnnlab.clip", builtins=("framework.nn.clip",),
                 discover=True)
SAMPLERS = Registry("sampler", entry_points="rnnlab.samplers",
                    builtins=("framework.nn.samplers",), discover=True)
OPTIMIZERS = Registry("optimizer", entry_points="rnnlab.optimizers",
                      builtins=("framework.nn.optimizers",), discover=True)
FEEDS = Registry("feed", select="train.feed", options="train", entry_points="rnnlab.feeds",
                 builtins=("framework.data.feeds.text", "framework.data.feeds.labelled",
                           "framework.data.feeds.series", "framework.data.feeds.sequences",
                           "framework.data.feeds.parallel"), discover=True)
SCHEDULES = Registry("lr_schedule", select="train.lr_schedule", options="train",
                     entry_points="rnnlab.lr_schedules", builtins=("framework.nn.schedules",),
                     discover=True)
TASKS = Registry("task", entry_points="rnnlab.tasks",
                 builtins=("framework.tasks.lm", "framework.tasks.classify",
                           "framework.tasks.forecast", "framework.tasks.seq2seq"), discover=True)
TOKENIZERS = Registry("tokenizer", entry_points="rnnlab.tokenizers",
                      builtins=("framework.data.tokenizers.chars",
                                "framework.data.tokenizers.tokens",
                                "framework.data.tokenizers.words"), discover=True)
ATTENTIONS = Registry("attention", entry_points="rnnlab.attentions",
                      builtins=("framework.nn.attention",), discover=True)
DECODERS = Registry("decoder", entry_points="rnnlab.decoders", builtins=("framework.nn.decoding",),
                    discover=True)

# Config group -> registry: `cell=lstm` picks a plugin, `cell.<key>=` sets its options. The group
# names are the public command-line interface.
REGISTRIES: dict[str, Registry] = {
    "task": TASKS,
    "cell": CELLS,
    "dataset": DATASETS,
    "clip": CLIPS,
    "sampler": SAMPLERS,
    "optimizer": OPTIMIZERS,
}
# Train key -> registry: `train.feed=names` picks a plugin; the options of every such plugin are
# train.* keys (train.stride), declared by its schema.
TRAIN_PLUGINS: dict[str, Registry] = {"feed": FEEDS, "lr_schedule": SCHEDULES}
# Every registry by kind (what discovery fills and the plugin contract test covers).
ALL: dict[str, Registry] = {r.kind: r for r in (CELLS, DATASETS, CLIPS, SAMPLERS, OPTIMIZERS,
                                               FEEDS, SCHEDULES, TASKS, TOKENIZERS, ATTENTIONS,
                                               DECODERS)}

__all__ = ["ALL", "ATTENTIONS", "CELLS", "CLIPS", "DATASETS", "DECODERS", "FEEDS", "OPTIMIZERS",
           "REGISTRIES", "SAMPLERS", "SCHEDULES", "TASKS", "TOKENIZERS", "TRAIN_PLUGINS", "Plugin",
           "Registry"]
