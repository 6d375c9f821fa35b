"""rnnlab's Optuna sweeper: a thin adapter from Hydra's multirun to Optuna's ask/tell API.

Each batch asks ``n_jobs`` trials, launches them as one batch through whatever launcher the
config chose (basic, joblib, submitit, ray), and tells Optuna each job's outcome: COMPLETE with
its return value, PRUNED when the job stopped itself on its pruner's advice (it returned a
:class:`~framework.sweeps.optuna_trial.PrunedValue`), FAIL otherwise (an error, NaN). The study
lives in a persistent storage, so running the same command again continues it, and several sweeper
processes (on one machine or several) can work on one study at once: Optuna hands out trial
numbers atomically. ``n_trials`` counts the trials of this invocation, not of the study.

Hydra only instantiates sweepers whose class lives in the ``hydra_plugins`` namespace package;
``hydra_plugins.rnnlab_optuna_sweeper`` holds that class and hands every call to this module, so
the plugin scan Hydra makes at every start-up imports neither this module nor Optuna.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.errors import ConfigError
from framework.sweeps.optuna_study_check import (
    check_settings,
    check_space,
    fixed_settings,
    record_settings,
)

log = logging.getLogger("rnnlab.optuna")
STORAGE_FILE = "optuna.db"
DIRECTIONS = ("minimize", "maximize")


@dataclass
class SweeperOptions:
    """``hydra.sweeper.*`` (conf/hydra/sweeper/optuna.yaml), checked before the study opens."""

    direction: str = "minimize"
    storage: str | None = None
    study_name: str | None = "rnnlab"
    n_trials: int = 20
    n_jobs: int = 1
    sampler: dict[str, Any] = field(default_factory=dict)
    pruner: Any = field(default_factory=lambda: {"name": "none"})  # or a name
    params: dict[str, str] = field(default_factory=dict)
    allow_changed_settings: bool = False  # continue a study whose fixed settings differ

    @classmethod
    def from_config(cls, options: dict[str, Any]) -> SweeperOptions:
        options = {k: v for k, v in options.items() if k != "_target_"}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"hydra.sweeper has no option {unknown[0]!r}; the Optuna sweeper "
                              f"takes {', '.join(sorted(known))}")
        raw = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
               for k, v in options.items()}
        if hasattr(raw.get("direction"), "name"):  # an enum from a structured config
            raw["direction"] = raw["direction"].name
        self = cls(**{k: v for k, v in raw.items() if v is not None or k in ("storage",
                                                                             "study_name")})
        self.check()
        return self

    def check(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"hydra.sweeper.direction must be minimize or maximize, got "
                              f"{self.direction!r} (one objective per study)")
        for key, least in (("n_trials", 0), ("n_jobs", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"hydra.sweeper.{key} must be an integer >= {least}, got "
                                  f"{value!r}")
        if self.study_name is not None and not str(self.study_name).strip():
            raise ConfigError("hydra.sweeper.study_name must not be empty (null: a new study "
                              "with a generated name)")
        if not isinstance(self.sampler, dict) or "_target_" not in self.sampler:
            raise ConfigError("hydra.sweeper.sampler needs a _target_ (choose one with "
                              "hydra/sweeper/sampler=tpe|random)")
        if not isinstance(self.pruner, (dict, str)):
            raise ConfigError("hydra.sweeper.pruner must be a pruner's name or its options "
                              "(hydra/sweeper/pruner=median hydra.sweeper.pruner.<key>=...)")
        if not isinstance(self.allow_changed_settings, bool):
            raise ConfigError(f"hydra.sweeper.allow_changed_settings must be true or false, got "
                              f"{self.allow_changed_settings!r}")
        if not isinstance(self.params, dict):
            raise ConfigError("hydra.sweeper.params must map config keys to search spaces, e.g. "
                              "optimizer.lr: tag(log, interval(1e-4, 1e-1))")


def default_storage(config: DictConfig) -> str:
    """``optuna.db`` next to the sqlite MLflow store, else in the launch directory: stable
    across invocations (the sweep dir is new every time), so the same command resumes."""
    from framework.tracking.tracker import _sqlite_path

    uri = str(OmegaConf.select(config, "mlflow.tracking_uri", default="") or "")
    db = _sqlite_path(uri) if OmegaConf.select(config, "mlflow.enabled", default=True) else None
    folder = db.parent if db is not None else Path.cwd()
    return f"sqlite:///{(folder / STORAGE_FILE).resolve()}"


def pruner_by_name(name: str, config: DictConfig) -> dict[str, Any]:
    """``hydra.sweeper.pruner=<name>``: the options of conf/hydra/sweeper/pruner/<name>.yaml
    (what ``hydra/sweeper/pruner=<name>`` selects), resolved against ``config``."""
    from framework.plugins import ROOT
    from framework.sweeps.optuna_trial import PRUNERS

    path = ROOT / "conf" / "hydra" / "sweeper" / "pruner" / f"{name}.yaml"
    if name not in PRUNERS:
        raise ConfigError(f"unknown pruner {name!r}; choose hydra.sweeper.pruner= one of "
                          f"{', '.join(PRUNERS)}")
    if not path.is_file():  # a pruner without rnnlab defaults (threshold): Optuna's own
        return {"name": name}
    root = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    root.hydra.sweeper.pruner = OmegaConf.load(path)
    return OmegaConf.to_container(root.hydra.sweeper.pruner, resolve=True)


def check_objective(config: DictConfig, direction: str) -> None:
    """The study's direction must be the natural one of what its jobs return (``optuna.objective``
    of the task they train): maximising a loss or minimising an accuracy is a config error."""
    from framework.registry import TASKS

    task = str(OmegaConf.select(config, "task.name", default="lm") or "lm")
    objective = str(OmegaConf.select(config, "optuna.objective", default="val_loss") or "val_loss")
    if task not in TASKS:
        return  # the job's own validation names the unknown task
    try:
        natural = TASKS.get(task).objective_direction(objective)
    except ConfigError as exc:
        raise ConfigError(f"optuna.objective: {exc}") from None
    if natural != direction:
        better = "higher" if natural == "maximize" else "lower"
        raise ConfigError(f"optuna.objective={objective} of task={task} is better {better}, but "
                          f"hydra.sweeper.direction={direction}; set "
                          f"hydra.sweeper.direction={natural}")


def preflight(config: DictConfig, arguments: list[str]) -> tuple[SweeperOptions, dict, list]:
    """Everything that can be checked before a sweep creates anything: the sweeper's options,
    the objective's direction, the search space and, for an existing study, its direction, its
    space and its fixed settings. Returns ``(options, search space, fixed overrides)``."""
    from framework.sweeps.optuna_space import parse_search_space

    node = config.hydra.sweeper
    options = SweeperOptions.from_config({k: node[k] for k in node if not str(k).startswith("_")})
    if isinstance(options.pruner, str):  # hydra.sweeper.pruner=median
        options.pruner = pruner_by_name(options.pruner, config)
    params = [f"{key}={value}" for key, value in options.params.items()]
    space, fixed = parse_search_space([*params, *arguments])
    check_objective(config, options.direction)
    study = _existing_study(config, options)
    if study is not None:
        check_study(study, options, space, fixed_settings(config, list(space)))
    return options, space, fixed


def _existing_study(config: DictConfig, options: SweeperOptions) -> Any:
    """The study this sweep would continue, or None (nothing is created to find out)."""
    from framework.sweeps.optuna_trial import _sqlite_file, absolute_storage, open_storage

    if options.study_name is None:
        return None  # a new study with a generated name
    storage = absolute_storage(str(options.storage or default_storage(config)))
    db = _sqlite_file(storage)
    if db is not None and not db.is_file():
        return None
    import optuna

    try:
        return optuna.load_study(study_name=options.study_name, storage=open_storage(storage))
    except KeyError:  # no study of that name yet
        return None


def check_study(study: Any, options: SweeperOptions, space: dict, settings: dict) -> None:
    """May this sweep continue ``study``? Its direction, space and settings must match."""
    direction = study.direction.name.lower()
    if direction != options.direction:
        raise ConfigError(f"Optuna study {study.study_name!r} was created to {direction}, not "
                          f"{options.direction}; use the same hydra.sweeper.direction or another "
                          f"study_name")
    check_space(study, space)
    check_settings(study, settings, allow_changed=options.allow_changed_settings)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a study seeded with ``seed``."""
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


SAMPLERS = ("TPESampler", "RandomSampler", "CmaEsSampler", "QMCSampler", "GPSampler",
            "NSGAIISampler")


def make_sampler(spec: dict[str, Any]) -> Any:
    """The configured sampler; with a seed, one re-seeded for every trial by its number.

    Re-seeding by trial number keeps a seeded study reproducible and makes a resumed study (or a
    second worker) draw new points: one sampler seeded once per process would repeat the first
    invocation's random draws in every later one.
    """
    import optuna

    spec = dict(spec)
    seed = spec.pop("seed", None)
    target = str(spec.pop("_target_", ""))
    # A whitelist of Optuna's own samplers: a config value never names arbitrary code to run.
    name = target.rsplit(".", 1)[-1]
    if not target.startswith("optuna.samplers.") or name not in SAMPLERS:
        raise ConfigError(f"hydra.sweeper.sampler._target_ must be one of "
                          f"{', '.join('optuna.samplers.' + s for s in SAMPLERS)}, got {target!r}")

    def build(trial_seed_value: int | None) -> Any:
        try:
            sampler = getattr(optuna.samplers, name)(**spec, seed=trial_seed_value)
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise ConfigError(f"hydra.sweeper.sampler ({spec.get('_target_')}): "
                              f"{str(cause).splitlines()[0]}") from None
        if not isinstance(sampler, optuna.samplers.BaseSampler):
            raise ConfigError(f"hydra.sweeper.sampler._target_ {spec.get('_target_')!r} is not "
                              f"an Optuna sampler")
        return sampler

    if seed is None:
        return build(None)

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = build(int(seed))

        def before_trial(self, study: Any, trial: Any) -> None:
            self.inner = build(trial_seed(int(seed), trial.number))
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            return self.inner.sample_independent(study, trial, name, dist)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return TrialSeededSampler()


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class OptunaStudySweeper:
    """The sweeper's work; ``hydra_plugins.rnnlab_optuna_sweeper.RnnlabOptunaSweeper`` calls it."""

    def __init__(self, options: dict[str, Any], *, hydra_context: Any, task_function: Any,
                 config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.options = SweeperOptions.from_config(options)
        if isinstance(self.options.pruner, str):  # hydra.sweeper.pruner=median
            self.options.pruner = pruner_by_name(self.options.pruner, config)
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.job_idx = 0

    # -- study ----------------------------------------------------------------------------------
    def open_study(self) -> tuple[Any, str]:
        import optuna

        from framework.sweeps.optuna_trial import absolute_storage, build_pruner, open_storage

        opts = self.options
        storage = absolute_storage(str(opts.storage or default_storage(self.config)))
        pruner = build_pruner(opts.pruner)
        sampler = make_sampler(opts.sampler)
        study = optuna.create_study(storage=open_storage(storage), study_name=opts.study_name,
                                    sampler=sampler, pruner=pruner, direction=opts.direction,
                                    load_if_exists=True)
        return study, storage

    def _job_overrides(self, trial: Any, fixed: list[str], storage: str, study: Any) -> list[str]:
        from framework.sweeps.optuna_space import override_value, trial_overrides

        pruner = ",".join(f"{k}:{override_value(v)}" for k, v in self.options.pruner.items())
        return [*fixed, *trial_overrides(trial.params),
                f"optuna.storage={_quote(storage)}",
                f"optuna.study_name={_quote(study.study_name)}",
                f"optuna.trial={trial.number}",
                f"optuna.pruner={{{pruner}}}"]

    # -- the loop -------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Any]:
        import optuna
        from optuna.trial import TrialState

        from framework.sweeps.optuna_report import write_study_files
        from framework.sweeps.optuna_trial import describe_storage
        from framework.sweeps.outcome import read_stop

        # The sweeper reports every trial itself, in one line (below).
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opts = self.options
        _, space, fixed = preflight(self.config, arguments)  # before the study exists
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study, storage = self.open_study()
        settings = fixed_settings(self.config, list(space))
        check_study(study, opts, space, settings)  # another worker may have created it since
        record_settings(study, settings)
        shown = describe_storage(storage)
        before = len(study.trials)
        best = (f", best #{study.best_trial.number} = {study.best_value:.6g}"
                if _has_best(study) else "")
        print(f"Optuna study '{study.study_name}' in {shown}: {before} trials so far{best}; "
              f"running {opts.n_trials} in batches of {opts.n_jobs} "
              f"({opts.sampler.get('_target_', '?').rsplit('.', 1)[-1]}, "
              f"pruner {opts.pruner.get('name', 'none')}, {opts.direction})", flush=True)
        returns: list[Any] = []
        pending: list[Any] = []
        asked: list[int] = []  # this invocation's trials (other workers' interleave with them)
        remaining = opts.n_trials
        try:
            while remaining > 0:
                batch = min(opts.n_jobs, remaining)
                pending = [study.ask(space) for _ in range(batch)]
                asked += [trial.number for trial in pending]
                overrides = [self._job_overrides(t, fixed, storage, study) for t in pending]
                self._validate(overrides)
                results = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
                self.job_idx += len(results)
                for trial, result in zip(pending, results, strict=True):
                    state, value, note = outcome(result)
                    if state == TrialState.COMPLETE:
                        study.tell(trial, value, skip_if_finished=True)
                    else:
                        study.tell(trial, state=state, skip_if_finished=True)
                    log.info(f"trial {trial.number}: {state.name}{note}")
                pending = []
                if read_stop(sweep_dir) is not None:  # every trial would fail the same way
                    break
                returns.append(results)
                remaining -= batch
        finally:
            for trial in pending:  # interrupted, or a batch that could not launch
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            results_file = write_study_files(study, sweep_dir, storage=shown, pruner=opts.pruner,
                                             asked=asked)
        best = (f"best #{study.best_trial.number} = {study.best_value:.6g} "
                f"{study.best_trial.params}" if _has_best(study) else "no completed trial yet")
        print(f"Optuna study '{study.study_name}': {len(study.trials)} trials, {best}; "
              f"{results_file}", flush=True)
        return returns

    def _validate(self, batch: list[list[str]]) -> None:
        """Compose every job's config before launching (catches a bad key in the search space
        with one line, instead of failing every job)."""
        loader = self.hydra_context.config_loader
        for overrides in batch:
            job = loader.load_sweep_config(master_config=self.config,
                                           sweep_overrides=list(overrides))
            check_objective(job, self.options.direction)  # the task may be in the space


def outcome(result: Any) -> tuple[Any, float | None, str]:
    """``(Optuna state, value, note for the log)`` of one finished job."""
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    from framework.sweeps.optuna_trial import PrunedValue

    value = result._return_value  # .return_value re-raises a failed job's exception
    if result.status != JobStatus.COMPLETED:
        return TrialState.FAIL, None, f" ({type(value).__name__}: {value})"
    if isinstance(value, PrunedValue):
        return TrialState.PRUNED, None, f" at step {value.step} ({float(value):.6g})"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return TrialState.COMPLETE, float(value), f" {float(value):.6g}"
    return TrialState.FAIL, None, f" (the job returned {value!r})"


def _has_best(study: Any) -> bool:
    try:
        study.best_trial  # noqa: B018 - raises ValueError when no trial completed
    except ValueError:
        return False
    return True


def register_plugin() -> None:
    """Make sure Hydra knows the sweeper class.

    Hydra finds plugins by listing the ``hydra_plugins`` package; an editable install
    (``pip install -e .``) maps ``hydra_plugins.rnnlab_optuna_sweeper`` through an import hook
    that can import it but not list it. Registering it by hand covers that case.
    """
    try:
        from hydra_plugins.rnnlab_optuna_sweeper import RnnlabOptunaSweeper
    except ImportError:  # a source tree that was never installed: Hydra will say so if needed
        return
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    name = f"{RnnlabOptunaSweeper.__module__}.{RnnlabOptunaSweeper.__name__}"
    if name not in plugins.class_name_to_class:
        plugins.register(RnnlabOptunaSweeper)


__all__ = ["OptunaStudySweeper", "SweeperOptions", "check_objective", "check_study",
           "default_storage", "make_sampler", "preflight", "register_plugin", "trial_seed"]
