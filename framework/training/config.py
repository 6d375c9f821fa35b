"""Config schemas of the top-level sections, and validation of a composed Hydra config.

Plugin groups (cell, dataset, clip, sampler, optimizer) are validated against the schema their
plugin registered with; the sections below are rnnlab's own. The plugins chosen by a train key
(``train.feed``, ``train.lr_schedule``) declare their options as ``train.*`` keys in their
schemas (:func:`train_plugin_fields`). Everything is checked before any work starts, and every
problem becomes a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from framework.errors import ConfigError, PluginError
from framework.nn.embedding import MAX_EMBEDDING
from framework.nn.generation import MAX_LENGTH, MAX_SAMPLES
from framework.registry import (
    REGISTRIES,
    TOKENIZERS,
    TRAIN_PLUGINS,
    describe_omegaconf_error,
)

LEGACY_SEEDS = 2**32  # np.random.RandomState takes seeds in [0, 2**32)


# Top-level keys besides the plugin groups and the sections.
SCALARS = ("seed", "dtype", "threads", "resume")
# Optional plugin sections: absent unless chosen (``tokenizer=words``); absent, the dataset's own
# symbols are used and the resolved config has no such key (runs before them are unchanged).
OPTIONAL_GROUPS = ("tokenizer",)
# Sections a study reads beside the run's own (the vanishing study's probe windows, kept in its
# preset experiments/vanishing_gradients.yaml); a training run leaves them alone.
STUDY_SECTIONS = ("probe",)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or "" when none is close."""
    close = difflib.get_close_matches(word, [c for c in choices if c != word], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_key_error(key: str, choices: Iterable[str]) -> ConfigError:
    """A key no schema knows (``+foo=bar``, ``train.stepz``), with the closest known one."""
    return ConfigError(f"unknown config key '{key}'{did_you_mean(key, choices)} "
                       f"(--cfg job lists the keys)")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class EmbeddingConfig:
    """``model.embedding``: token ids through a learned (V, size) table instead of one-hot."""

    size: int = 0  # 0: one-hot input (the models before embeddings, every number unchanged)
    trainable: bool = True  # false: the table stays as initialised (frozen pretrained vectors)
    pretrained: str = "none"  # none | glove-6b-50d | the path of a GloVe/word2vec text file

    def __post_init__(self) -> None:
        _check(0 <= self.size <= MAX_EMBEDDING,
               f"model.embedding.size must be in [0, {MAX_EMBEDDING}] (0: one-hot input), got "
               f"{self.size}")
        _check(bool(str(self.pretrained).strip()),
               "model.embedding.pretrained must be none, glove-6b-50d or a vector file's path")
        _check(self.size > 0 or self.pretrained == "none",
               f"model.embedding.pretrained={self.pretrained} needs an embedding: set "
               f"model.embedding.size to the vectors' dimension (50 for glove-6b-50d)")
        _check(self.size > 0 or self.trainable,
               "model.embedding.trainable=false needs an embedding: set model.embedding.size")


@dataclass
class ModelConfig:
    num_layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = False  # classify: a forward and a backward stack, states concatenated
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)

    def __post_init__(self) -> None:
        _check(self.num_layers >= 1, f"model.num_layers must be >= 1, got {self.num_layers}")
        _check(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class EarlyStopConfig:
    """``train.early_stop``: end training after ``patience`` evals without an improvement of the
    task's objective by more than ``min_delta`` (0 turns it off); the best eval's parameters are
    restored at the end."""

    patience: int = 0
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        _check(self.patience >= 0, f"train.early_stop.patience must be >= 0 evals (0 turns early "
                                   f"stopping off), got {self.patience}")
        _check(math.isfinite(self.min_delta) and self.min_delta >= 0,
               f"train.early_stop.min_delta must be a finite number >= 0, got {self.min_delta}")


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 32
    seq_len: int = 25
    feed: str = "auto"  # a FEEDS name; the feeds' options are train.* keys too
    loss: str = "mean"
    lr_schedule: str = "constant"  # a SCHEDULES name; their options are train.* keys too
    smooth_init_tokens: int | None = None
    smoothing: float = 0.99
    log_every: int = 10
    eval_every: int = 500
    eval_batches: int | None = None
    sample_every: int = 500
    num_samples: int = 5
    sample_length: int = 200
    checkpoint_every: int = 1000
    report: str = "default"
    progress: str = "auto"
    status_every: float = 30.0  # seconds between status lines when output is not a terminal
    divergence_loss: float = 100.0
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)

    def __post_init__(self) -> None:
        _check(self.steps >= 0, f"train.steps must be >= 0, got {self.steps}")
        _check(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _check(self.seq_len >= 1, f"train.seq_len must be >= 1, got {self.seq_len}")
        _check(self.loss in ("mean", "sum"),
               f"train.loss must be 'mean' or 'sum', got {self.loss!r}")
        _check(0.0 <= self.smoothing < 1.0,
               f"train.smoothing must be in [0, 1), got {self.smoothing}")
        for key in ("log_every", "eval_every", "sample_every", "checkpoint_every"):
            value = getattr(self, key)
            _check(value >= 0, f"train.{key} must be >= 0 (0 turns it off), got {value}")
        _check(self.eval_batches is None or self.eval_batches >= 1,
               f"train.eval_batches must be >= 1 or null (all), got {self.eval_batches}")
        _check(0 <= self.num_samples <= MAX_SAMPLES,
               f"train.num_samples must be in [0, {MAX_SAMPLES}], got {self.num_samples}")
        _check(1 <= self.sample_length <= MAX_LENGTH,
               f"train.sample_length must be in [1, {MAX_LENGTH}], got {self.sample_length}")
        _check(self.divergence_loss > 0,
               f"train.divergence_loss must be > 0, got {self.divergence_loss}")
        _check(self.report in ("default", "course"),
               f"train.report must be 'default' or 'course', got {self.report!r}")
        _check(self.progress in ("auto", "always", "never"),
               f"train.progress must be auto, always or never, got {self.progress!r}")
        _check(self.status_every >= 0,
               f"train.status_every must be >= 0 seconds (0: no status lines), got "
               f"{self.status_every}")
        _check(self.early_stop.patience == 0 or self.eval_every > 0,
               f"train.early_stop.patience={self.early_stop.patience} counts evals, but "
               f"train.eval_every=0 turns them off; set train.eval_every or patience=0")


@dataclass
class GenerateConfig:
    window: int | None = None

    def __post_init__(self) -> None:
        _check(self.window is None or self.window >= 1,
               f"generate.window must be >= 1 or null, got {self.window}")


def _check_tracking_uri(uri: str) -> None:
    """The URI's form: parsable, a server with a host and a valid port, a sqlite store in a
    file (an in-memory database would lose the run when the command ends)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"mlflow.tracking_uri {uri!r} is not a valid URI ({exc}); use e.g. "
                         f"sqlite:///mlflow.db or http://127.0.0.1:5000") from None
    if parts.scheme in ("http", "https"):
        _check(bool(parts.hostname), f"mlflow.tracking_uri {uri!r} names no server; use e.g. "
                                     f"http://127.0.0.1:5000")
        _check(port != 0, f"mlflow.tracking_uri {uri!r} has port 0; give the server's port")
    if parts.scheme == "sqlite":
        path = uri[len("sqlite:"):].lstrip("/").split("?", 1)[0]
        _check(path not in ("", ":memory:"),
               f"mlflow.tracking_uri {uri!r} is an in-memory database, lost when the command "
               f"ends; name a file (sqlite:///mlflow.db) or set mlflow.enabled=false")


@dataclass
class MlflowConfig:
    enabled: bool = True
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment_name: str = "rnnlab"
    run_name: str | None = None
    log_model: bool = True
    parent_run_id: str | None = None
    register_model: str | None = None  # a registered model's name: each run adds a version
    system_metrics: bool = False  # MLflow's CPU/memory/disk/network sampler (system/* metrics)
    helper_process: bool = True

    def __post_init__(self) -> None:
        _check(bool(self.tracking_uri.strip()), "mlflow.tracking_uri must not be empty")
        _check_tracking_uri(self.tracking_uri.strip())
        _check(bool(self.experiment_name.strip()), "mlflow.experiment_name must not be empty")
        _check(self.register_model is None or bool(self.register_model.strip()),
               "mlflow.register_model must be a model name or null")
        _check(self.register_model is None or self.log_model,
               "mlflow.register_model needs mlflow.log_model=true (it registers the logged "
               "model)")


# -- Optuna trial section (hparams_search=optuna): set per job by the sweeper ------------------
@dataclass
class OptunaTrialConfig:
    """Where a job of an Optuna study reports its evals (framework/sweeps/optuna_trial.py)."""

    storage: str | None = None
    study_name: str | None = None
    trial: int | None = None
    pruner: dict[str, Any] | None = None
    objective: str = "val_loss"

    def __post_init__(self) -> None:
        # Which metrics exist depends on the task: validate() checks the name against it.
        _check(isinstance(self.objective, str) and bool(self.objective.strip()),
               f"optuna.objective must name a metric, got {self.objective!r}")
        _check(self.trial is None or self.trial >= 0,
               f"optuna.trial must be >= 0 or null, got {self.trial}")
# -- end of Optuna trial section


@dataclass
class RunConfig:
    """A fully validated run: plugin sections are their plugins' schema instances."""

    task: Any
    cell: Any
    dataset: Any
    clip: Any
    sampler: Any
    optimizer: Any
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    optuna: OptunaTrialConfig = field(default_factory=OptunaTrialConfig)
    seed: int = 0
    dtype: str = "float32"
    resume: str | None = None
    threads: int | None = 1
    feed: Any = None  # the chosen train.feed's schema instance
    lr_schedule: Any = None  # the chosen train.lr_schedule's schema instance
    # Every feed's and lr schedule's validated option (they share the train section's keys).
    train_options: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None  # the chosen TOKENIZERS schema instance; None: the dataset's symbols

    def options(self, group: str) -> dict[str, Any]:
        """A plugin section's options as a dict (without ``name``)."""
        section = getattr(self, group)
        values = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else dict(section)
        values.pop("name", None)
        return values

    def to_dict(self) -> dict[str, Any]:
        """The validated config as plain containers, in the composed config's shape (plugin
        groups with their ``name``, the feeds' and schedules' options inside ``train``): what
        checkpoints store, resume compares and MLflow logs as ``config.yaml``."""
        out: dict[str, Any] = {}
        for group in REGISTRIES:
            out[group] = {"name": getattr(self, group).name, **self.options(group)}
        if self.tokenizer is not None:
            out["tokenizer"] = {"name": self.tokenizer.name, **self.options("tokenizer")}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        out["train"].update(self.train_options)
        out.update(seed=self.seed, dtype=self.dtype, resume=self.resume, threads=self.threads)
        return out


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "generate": GenerateConfig,
            "mlflow": MlflowConfig, "optuna": OptunaTrialConfig}


def _refuse_unknown_keys(name: str, schema: type, node: Any) -> None:
    """Refuse a key of ``node`` that ``schema`` lacks, in nested sections too
    (``train.early_stop.patiense``)."""
    if not isinstance(node, dict):
        return
    fields = {f"{name}.{f.name}": f for f in dataclasses.fields(schema)}
    for key, value in node.items():
        found = fields.get(f"{name}.{key}")
        if found is None:
            raise unknown_key_error(f"{name}.{key}", fields)
        nested = found.default_factory if found.default_factory is not dataclasses.MISSING \
            else None
        if dataclasses.is_dataclass(nested):
            if not isinstance(value, dict):
                keys = ", ".join(f"{name}.{key}.{f.name}=" for f in dataclasses.fields(nested))
                raise ConfigError(f"{name}.{key} is a section, not a value: set {keys}; got "
                                  f"{value!r}")
            _refuse_unknown_keys(f"{name}.{key}", nested, value)


def _section(name: str, schema: type, node: Any) -> Any:
    _refuse_unknown_keys(name, schema, node)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node or {})
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_omegaconf_error(exc, name)) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def train_plugin_fields() -> dict[str, dataclasses.Field]:
    """Every ``train.*`` option of the feeds and lr schedules, from their schemas.

    The options share the ``train`` section, so a key two plugins declare (``warmup_steps`` of
    every schedule) must have one default, and no plugin may reuse a key of TrainConfig.
    """
    own = {f.name for f in dataclasses.fields(TrainConfig)}
    found: dict[str, tuple[dataclasses.Field, str, str]] = {}  # key -> (field, default, who)
    for registry in TRAIN_PLUGINS.values():
        for name in registry.names():
            for f in registry.option_fields(name):
                who = f"{registry.kind} '{name}'"
                if f.name in own:
                    raise PluginError(f"{who} declares option '{f.name}', but train.{f.name} is "
                                      f"already a training setting; rename the option")
                default = repr(registry.defaults(name)[f.name])
                if f.name in found and found[f.name][1] != default:
                    _, other_default, other = found[f.name]
                    raise PluginError(
                        f"{other} declares train.{f.name} with default {other_default}, {who} "
                        f"with {default}; give them one default or rename one")
                found.setdefault(f.name, (f, default, who))
    return {key: f for key, (f, _, _) in found.items()}


def _train_plugins(node: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate every feed's and lr schedule's options from ``node`` (the train section, with
    the plugin options popped out of it); returns the chosen plugins' schema instances and every
    option's validated value."""
    options = train_plugin_fields()
    values = {k: node.pop(k) for k in list(node) if k in options}
    chosen: dict[str, Any] = {}
    validated: dict[str, Any] = {}
    for key, registry in TRAIN_PLUGINS.items():
        selected = node.get(key, getattr(TrainConfig, key))
        if not isinstance(selected, str) or selected not in registry:
            raise ConfigError(registry.unknown_message(selected))
        # All of them, as the keys are shared: train.stride=0 is wrong whichever feed is chosen.
        for name in registry.names():
            mine = {k: values[k] for k in registry.option_names(name) if k in values}
            cfg = registry.validate({"name": name, **mine})
            validated.update({f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                              if f.name != "name"})
            if name == selected:
                chosen[key] = cfg
    return chosen, validated


def _check_legacy_seeds(seed: int, cell: Any, train: TrainConfig, feed: Any = None) -> None:
    """The course's init and the example feed's shuffle draw from a legacy RandomState, which
    takes seeds below 2**32 only: refuse a larger one before any work, not in the middle."""
    if seed < LEGACY_SEEDS:
        return
    if getattr(cell, "init", None) == "course":
        raise ConfigError(f"seed={seed} is too large for cell.init=course, whose legacy "
                          f"RandomState takes seeds below 2**32 ({LEGACY_SEEDS}); choose a "
                          f"smaller seed or cell.init=xavier")
    if train.feed == "example" and getattr(feed, "shuffle_seed", None) is None:
        raise ConfigError(f"seed={seed} is too large for train.feed=example, which shuffles "
                          f"with a legacy RandomState (seeds below 2**32, {LEGACY_SEEDS}); "
                          f"choose a smaller seed or set train.shuffle_seed")


def _check_objective(task: Any, optuna: Any) -> None:
    """``optuna.objective`` must be a metric the task reports at every eval (or its best_)."""
    objective = getattr(optuna, "objective", None)
    if objective is None:
        return
    try:
        REGISTRIES["task"].get(task.name).objective_direction(objective)
    except ConfigError as exc:
        raise ConfigError(f"optuna.objective: {exc}") from None


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Validate a composed config; raises ConfigError/PluginError with a one-line message."""
    if isinstance(cfg, DictConfig):
        try:
            raw = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(describe_omegaconf_error(exc)) from None
    else:
        raw = dict(cfg)
    raw.pop("hydra", None)
    known = [*REGISTRIES, *OPTIONAL_GROUPS, *SECTIONS, *SCALARS, *STUDY_SECTIONS]
    for key in raw:
        if key not in known:  # +foo=bar: a key no schema reads would change nothing
            raise unknown_key_error(str(key), known)
    plugins = {}
    for group, registry in REGISTRIES.items():
        node = raw.get(group)
        if not isinstance(node, dict) or "name" not in node:
            raise ConfigError(f"config has no '{group}' section; choose one with {group}=<name>")
        plugins[group] = registry.validate(node)
    tokenizer = raw.get("tokenizer")
    if tokenizer is not None:
        if not isinstance(tokenizer, dict) or "name" not in tokenizer:
            raise ConfigError("tokenizer must be chosen by name: tokenizer=words (or chars, "
                              "tokens)")
        tokenizer = TOKENIZERS.validate(tokenizer)
    train_node = raw.get("train")
    if train_node is None or isinstance(train_node, dict):
        train_node = dict(train_node or {})  # the plugins' options are popped out of it
        chosen, train_options = _train_plugins(train_node)
    else:  # not a mapping: the train section's own check below names the problem
        chosen, train_options = {}, {}
    sections = {name: _section(name, schema, train_node if name == "train" else raw.get(name))
                for name, schema in SECTIONS.items()}
    dtype = raw.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be float32 or float64, got {dtype!r}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    _check_legacy_seeds(seed, plugins["cell"], sections["train"], chosen.get("feed"))
    threads = raw.get("threads", 1)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                or threads < 1):
        raise ConfigError(f"threads must be a positive integer or null, got {threads!r}")
    _check_objective(plugins["task"], sections.get("optuna"))
    resume = raw.get("resume")
    return RunConfig(**plugins, **sections, seed=seed, dtype=dtype,
                     resume=None if resume in (None, "") else str(resume), threads=threads,
                     train_options=train_options, tokenizer=tokenizer, **chosen)
