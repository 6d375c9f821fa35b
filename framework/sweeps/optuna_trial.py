"""The job side of an Optuna trial: open the study's storage, report every eval, decide pruning.

The Optuna sweeper (framework/sweeps/optuna_sweeper.py) runs each trial as an ordinary rnnlab
job, possibly in another process or on another machine, and tells it where its trial lives
through the job's config section ``optuna`` (storage, study_name, trial, pruner, objective).
The job opens that storage itself, reports the objective at every eval and asks the pruner,
which reads the other trials' reports from the same storage. The sweeper stays the only one that
finishes trials (tells Optuna COMPLETE, PRUNED or FAIL): a pruned job returns a
:class:`PrunedValue`.

Optuna is imported only here and only when a job belongs to a study.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from framework.errors import ConfigError, TrackingError
from framework.tasks.base import BEST_PREFIX
from framework.tracking.tracker import redact_url

PRUNED_TAG = "rnnlab.pruned_at_step"
JOURNAL_PREFIX = "journal:"
# The pruners a config may name, and Optuna's class for each: a whitelist, so that a config
# value never names arbitrary code to run in the job.
PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "percentile": "PercentilePruner",
           "hyperband": "HyperbandPruner", "successive_halving": "SuccessiveHalvingPruner",
           "threshold": "ThresholdPruner"}
SQLITE_TIMEOUT_S = 60  # concurrent jobs write their reports into one sqlite file

log = logging.getLogger("rnnlab.optuna")


class PrunedValue(float):
    """What a pruned job returns: its last reported objective, and the step it stopped at."""

    step: int

    def __new__(cls, value: float, step: int) -> PrunedValue:
        obj = super().__new__(cls, value)
        obj.step = int(step)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # launchers pickle job returns back to the sweeper
        return (PrunedValue, (float(self), self.step))

    def __repr__(self) -> str:
        return f"PrunedValue({float(self)!r}, step={self.step})"


# ------------------------------------------------------------------------------------ storage
def describe_storage(spec: str) -> str:
    """The storage as it may be shown and logged (a password in the URL masked)."""
    return redact_url(spec)


def _sqlite_file(spec: str) -> Path | None:
    if not spec.startswith("sqlite:///"):
        return None
    raw = spec[len("sqlite:///"):].split("?", 1)[0]
    return None if raw in ("", ":memory:") else Path(raw)


def absolute_storage(spec: str) -> str:
    """``spec`` with a relative sqlite or journal file made absolute (jobs may run elsewhere)."""
    if spec.startswith(JOURNAL_PREFIX):
        return JOURNAL_PREFIX + str(Path(spec[len(JOURNAL_PREFIX):]).expanduser().resolve())
    path = _sqlite_file(spec)
    if path is not None and not path.is_absolute():
        query = spec.split("?", 1)[1] if "?" in spec else ""
        spec = f"sqlite:///{path.expanduser().resolve()}" + (f"?{query}" if query else "")
    return spec


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise the first opening of one storage file: processes opening a fresh sqlite file at
    once race on creating its tables."""
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"rnnlab-optuna-{key}.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def open_storage(spec: str) -> Any:
    """An Optuna storage for ``spec``: ``sqlite:///file``, any SQLAlchemy database URL
    (``postgresql+psycopg2://user@host/db``) or ``journal:<file>`` (Optuna's journal file).

    Problems (a missing driver, an unreachable server, a directory that does not exist) are a
    one-line TrackingError.
    """
    import optuna

    spec = str(spec).strip()
    shown = describe_storage(spec)
    try:
        if spec.startswith(JOURNAL_PREFIX):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(spec[len(JOURNAL_PREFIX):]).expanduser()
            if not path.parent.is_dir():
                raise TrackingError(f"Optuna storage {shown!r}: directory {path.parent} does not "
                                    f"exist; create it or choose another hydra.sweeper.storage")
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in spec:
            raise TrackingError(f"Optuna storage {shown!r} is neither a database URL "
                                f"(sqlite:///optuna.db, postgresql+psycopg2://...) nor "
                                f"journal:<file>; fix hydra.sweeper.storage")
        sqlite = _sqlite_file(spec)
        if sqlite is None:
            return optuna.storages.RDBStorage(spec, engine_kwargs={"pool_pre_ping": True})
        if not sqlite.parent.is_dir():
            raise TrackingError(f"Optuna storage {shown!r}: directory {sqlite.parent} does not "
                                f"exist; create it or choose another hydra.sweeper.storage")
        with _file_lock(sqlite):
            return optuna.storages.RDBStorage(
                spec, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})
    except TrackingError:
        raise
    except Exception as exc:
        detail = redact_url(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        hint = ("; pip install -e '.[postgres]'" if "psycopg2" in detail else
                "; check the URL and that the database server is running")
        raise TrackingError(f"Optuna storage {shown!r} cannot be opened "
                            f"({type(exc).__name__}: {detail}){hint}") from None


# ------------------------------------------------------------------------------------ pruners
def build_pruner(spec: Mapping[str, Any] | str | None) -> Any:
    """An Optuna pruner from ``{"name": "median", <its options>...}`` (or just a name)."""
    import optuna

    if spec is None:
        spec = {"name": "none"}
    elif isinstance(spec, str):
        spec = {"name": spec}
    options = {str(k): v for k, v in dict(spec).items()}
    name = str(options.pop("name", "none"))
    if name not in PRUNERS:
        raise ConfigError(f"unknown pruner {name!r}; choose hydra/sweeper/pruner= one of "
                          f"{', '.join(PRUNERS)}")
    cls = getattr(optuna.pruners, PRUNERS[name])
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"pruner {name!r}: {exc} (options given: "
                          f"{', '.join(options) or 'none'})") from None


# ------------------------------------------------------------------------------ the job's trial
class TrialReporter:
    """One trial seen from its job: ``report(step, value) -> bool`` (True: prune now).

    ``objective`` is a metric the task reports at every eval, or ``best_<metric>``: the best
    value of that metric over this job's evals so far, better meaning ``direction``.
    """

    def __init__(self, study: Any, trial_id: int, number: int, objective: str,
                 direction: str = "minimize") -> None:
        self.study = study
        self.trial_id = trial_id
        self.number = number
        self.objective = objective
        self.direction = direction
        self.best = math.nan  # of the best_ objective's metric
        self.last_value = math.nan
        self.last_step: int | None = None
        self._warned = False
        self._trial: Any = None  # optuna.trial.Trial, made at the first report

    def report(self, step: int, value: float) -> bool:
        """Record the objective at ``step`` in the study; True when the pruner stops the trial.

        A storage problem while training only warns (once) and never prunes: losing one report
        must not kill a run that is otherwise fine.
        """
        from optuna.trial import Trial

        self.last_value, self.last_step = float(value), int(step)
        try:
            if self._trial is None:
                self._trial = Trial(self.study, self.trial_id)
            self._trial.report(float(value), int(step))
            return bool(self._trial.should_prune())
        except Exception as exc:
            if not self._warned:
                self._warned = True
                log.warning("Optuna report of trial %d failed (%s: %s); this trial will not be "
                            "pruned", self.number, type(exc).__name__,
                            redact_url(str(exc).splitlines()[0] if str(exc) else ""))
            return False

    def value(self, step: int, metrics: Mapping[str, float]) -> float:
        """This job's objective after the eval at ``step`` with ``metrics``."""
        best = self.objective.startswith(BEST_PREFIX)
        metric = self.objective[len(BEST_PREFIX):] if best else self.objective
        if metric not in metrics:
            raise ConfigError(f"optuna.objective={self.objective}: the eval at step {step} did "
                              f"not compute {metric} (it reported {', '.join(sorted(metrics))}); "
                              f"choose one of those")
        value = float(metrics[metric])
        if not best:
            return value
        sign = 1.0 if self.direction == "minimize" else -1.0
        if math.isfinite(value) and not sign * value >= sign * self.best:  # NaN best: replaced
            self.best = value
        return self.best

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> bool:
        """The trainer's eval hook: report this job's objective out of the eval's metrics."""
        return self.report(step, self.value(step, metrics))

    def pruned(self, step: int) -> PrunedValue:
        """The value a job pruned at ``step`` returns to the sweeper."""
        return PrunedValue(self.last_value, step)


def open_trial(section: Any, task: Any = None) -> TrialReporter | None:
    """The reporter of the trial a job runs, from its ``optuna`` config section; None when the
    job is not part of a study (``optuna.trial`` is null).  ``task`` (its class or instance) says
    which objectives exist and which way each is better (default: the language model's)."""
    get = section.get if isinstance(section, Mapping) else (lambda k: getattr(section, k, None))
    number = get("trial")
    if number is None:
        return None
    storage, study_name = get("storage"), get("study_name")
    if not storage or not study_name:
        raise ConfigError("optuna.trial is set but optuna.storage or optuna.study_name is not; "
                          "these are set together by the Optuna sweeper (hparams_search=optuna)")
    objective = str(get("objective") or "val_loss")
    if task is None:
        from framework.tasks.lm import LanguageModelTask

        task = LanguageModelTask
    try:
        direction = task.objective_direction(objective)
    except ConfigError as exc:
        raise ConfigError(f"optuna.objective: {exc}") from None
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweeper logs the study's progress
    backend = open_storage(str(storage))
    pruner = build_pruner(get("pruner"))
    shown = describe_storage(str(storage))
    try:
        study = optuna.load_study(study_name=str(study_name), storage=backend, pruner=pruner,
                                  sampler=optuna.samplers.RandomSampler())
        study_id = backend.get_study_id_from_name(str(study_name))
    except KeyError:
        raise TrackingError(f"there is no Optuna study {study_name!r} in {shown!r}; optuna.* is "
                            f"set by the sweeper, not by hand") from None
    try:
        trial_id = backend.get_trial_id_from_study_id_trial_number(study_id, int(number))
        state = backend.get_trial(trial_id).state
    except KeyError:
        raise TrackingError(f"Optuna study {study_name!r} in {shown!r} has no trial {number}; "
                            f"optuna.* is set by the sweeper, not by hand") from None
    if state != TrialState.RUNNING:
        raise TrackingError(f"trial {number} of Optuna study {study_name!r} is already "
                            f"{state.name}; a trial runs once (start a new one through the "
                            f"sweeper)")
    return TrialReporter(study, trial_id, int(number), objective, direction)


__all__ = ["PRUNED_TAG", "PRUNERS", "PrunedValue", "TrialReporter", "absolute_storage",
           "build_pruner", "describe_storage", "open_storage", "open_trial"]
