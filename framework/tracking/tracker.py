"""MLflow tracking through an explicit ``MlflowClient`` (no fluent, process-global active run).

Why not ``mlflow.start_run``/``mlflow.set_experiment``: the fluent API keeps the active run and
experiment in globals, which misfiles runs into "Default" when sweep jobs run concurrently.  Here
every call names its run id and the experiment id is resolved (get-or-create) explicitly.

Other traps handled here:

* The tracking URI is always explicit (default ``sqlite:///mlflow.db``): MLflow's own default is a
  ``./mlruns`` file store, which this MLflow version refuses once that folder holds data.
* Parallel jobs that open a fresh sqlite store race on creating its schema; the first open (and
  experiment creation) is serialised by a lock file in the temp dir keyed by the database path.
* Artifacts of new experiments on a sqlite store go to ``<db dir>/mlartifacts/`` (the same folder
  ``mlflow server`` uses), never to ``./mlruns`` where they would trigger the trap above.
* Metrics are buffered and sent with ``log_batch`` (every ~2 s or 500 values, and at the end); a
  failed flush keeps the metrics and warns, so a tracking server going away never kills training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import getpass
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from framework import ROOT
from framework.errors import CheckpointError, TrackingError
from framework.tracking import http_bounds, run_owner
from framework.tracking.protocol import NullTracker, Tracker
from framework.tracking.run_owner import FAILURE_REASON_TAG
from framework.tracking.store_errors import (
    describe,
    first_line,
    quiet_store_tracebacks,
    store_fault,
    warn_if_locked,
)

if TYPE_CHECKING:
    from framework.tracking.run_info import DatasetRecord

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
CHECKPOINT_ARTIFACT_DIR = "checkpoints"
MODEL_ARTIFACT_PATH = "model"
FLUSH_EVERY_SECONDS = 2.0
FLUSH_EVERY_METRICS = 500
MAX_BUFFERED_METRICS = 200_000  # beyond this (server down for long) the oldest values are dropped
# MLflow's limits (mlflow.utils.validation); copied so importing this module stays cheap.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
PARAMS_PER_BATCH = 100
DIGEST_CHARS = 36  # MLflow's longest dataset digest
SHA256_INPUT_TAG = "rnnlab.sha256"
SYSTEM_EVERY = 5.0  # seconds between samples of mlflow.system_metrics=true
_KNOWN_SCHEMES = {"sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks",
                  "file", ""}

log = logging.getLogger("rnnlab.tracking")


# ------------------------------------------------------------------------------------- helpers
_CREDENTIALS = re.compile(r"(//[^/@:\s]*):[^/\s]*@")


def redact_url(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host`` (for logs and params)."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _store_name(uri: str) -> str:
    """How a store is named in messages: the sqlite file's path, else the URI."""
    db = _sqlite_path(uri)
    return str(db) if db is not None else repr(uri)


def git_commit(repo: Path = ROOT) -> str | None:
    """``git rev-parse HEAD`` of the repo, or None (no git, no commits yet, not a repo)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (relative paths resolved against cwd)."""
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///"):].split("?", 1)[0]
    if not raw or raw == ":memory:":
        return None
    try:
        return Path(raw).expanduser().resolve()
    except (RuntimeError, OSError):  # a symlink loop: refused by check_store_file
        return Path(os.path.abspath(Path(raw).expanduser()))


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise first-time schema creation/experiment creation on one sqlite file."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    key = hashlib.sha256(str(db).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"rnnlab-mlflow-{key}.lock"
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _environ(**names: str) -> Iterator[None]:
    """Temporarily set environment variables (MLflow reads its settings at every call)."""
    old = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    return default if value is None and default is not None else value


def check_listening(tracking_uri: str, timeout: float) -> None:
    """A plain TCP connect to an http(s) tracking server (other stores: nothing to do), the fast
    part of :meth:`MlflowTracker.check_reachable`: nothing listening fails within ``timeout``."""
    import socket
    import urllib.request

    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    if urllib.request.getproxies().get(parsed.scheme) and not urllib.request.proxy_bypass(
            parsed.hostname):
        return  # reached through a proxy: only MLflow's own request can tell
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise TrackingError(
            f"MLflow tracking server {tracking_uri!r} is not reachable ({detail}); "
            f"start it, fix mlflow.tracking_uri, or set mlflow.enabled=false") from None


def make_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` for ``tracking_uri`` whose store is fully initialised.

    Bad URIs become a one-line TrackingError.  For sqlite the first open happens under a lock.
    """
    uri = tracking_uri.strip()
    try:
        scheme = urlparse(uri).scheme
    except ValueError as exc:  # "http://[::1": an unclosed IPv6 address
        raise TrackingError(f"mlflow.tracking_uri {uri!r} is not a valid URI ({exc}); use e.g. "
                            f"{DEFAULT_TRACKING_URI} or http://127.0.0.1:5000") from None
    if scheme not in _KNOWN_SCHEMES:
        raise TrackingError(f"mlflow.tracking_uri {uri!r} has an unsupported scheme '{scheme}'; "
                            f"use e.g. {DEFAULT_TRACKING_URI} or http://host:5000")
    if scheme in ("", "file"):
        raise TrackingError(f"mlflow.tracking_uri {uri!r} is a file store, which this MLflow no "
                            f"longer supports; use e.g. {DEFAULT_TRACKING_URI}")
    db = _sqlite_path(uri)
    if db is not None:
        from framework.tracking.sqlite_file import check_store_file

        check_store_file(db)  # at once, not after MLflow's 90 s of retries
    quiet_store_tracebacks()
    http_bounds.apply_defaults()
    # MLflow prints "View run ... at: <url>" on stdout when a run on a server ends; rnnlab's own
    # lines already link the run (and the extra get_run is one more call to a server).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from mlflow import MlflowClient

    try:
        with _store_lock(uri):
            db = _sqlite_path(uri)
            if db is not None:  # MLflow's store would wait for another process's lock silently
                warn_if_locked(db)
            client = MlflowClient(tracking_uri=uri)
            if scheme in ("http", "https"):
                client = http_bounds.BoundedClient(client)
            if scheme == "sqlite":
                client.search_experiments(max_results=1)  # creates/migrates the schema now
    except TrackingError:
        raise
    except Exception as exc:
        fault = store_fault(exc, _store_name(uri))
        raise TrackingError(fault or f"cannot open MLflow tracking store {uri!r}: "
                            f"{first_line(exc)}; check mlflow.tracking_uri") from None
    return client


def download_checkpoint(client: Any, run_id: str, artifact: str | None = None,
                        dst_dir: str | os.PathLike[str] | None = None) -> Path:
    """Download a run's checkpoint artifact and return its local path.

    With ``artifact=None`` the first of ``checkpoints/latest.npz``, ``checkpoints/final.npz``,
    ``checkpoints/best.npz``, the newest ``checkpoints/step_*.npz`` and the logged model's
    checkpoint is taken.  Unknown runs and runs without checkpoints are a CheckpointError.
    """
    try:
        client.get_run(run_id)
    except Exception as exc:
        raise CheckpointError(f"MLflow run '{run_id}' not found in {client.tracking_uri} "
                              f"({first_line(exc)}); check run_id and mlflow.tracking_uri"
                              ) from None
    if artifact is None:
        artifact = _pick_checkpoint_artifact(client, run_id)
        if artifact is None:
            raise CheckpointError(f"MLflow run '{run_id}' has no checkpoint artifact (looked in "
                                  f"{CHECKPOINT_ARTIFACT_DIR}/ and {MODEL_ARTIFACT_PATH}/)")
    dst = Path(dst_dir) if dst_dir else Path(tempfile.mkdtemp(prefix="rnnlab-run-"))
    dst.mkdir(parents=True, exist_ok=True)
    try:
        with _environ(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):  # keep stderr clean
            local = client.download_artifacts(run_id, artifact, str(dst))
    except Exception as exc:
        raise CheckpointError(f"cannot download '{artifact}' of MLflow run '{run_id}': "
                              f"{first_line(exc)}") from None
    return Path(local)


def _pick_checkpoint_artifact(client: Any, run_id: str) -> str | None:
    def names(path: str) -> list[str]:
        try:
            return [f.path for f in client.list_artifacts(run_id, path) if not f.is_dir]
        except Exception:
            return []

    ckpts = names(CHECKPOINT_ARTIFACT_DIR)
    for name in ("latest.npz", "final.npz", "best.npz"):
        wanted = f"{CHECKPOINT_ARTIFACT_DIR}/{name}"
        if wanted in ckpts:
            return wanted
    steps = sorted(p for p in ckpts if Path(p).name.startswith("step_") and p.endswith(".npz"))
    if steps:
        return max(steps, key=lambda p: int("".join(c for c in Path(p).stem if c.isdigit()) or 0))
    model_ckpts = [p for p in names(f"{MODEL_ARTIFACT_PATH}/artifacts") if p.endswith(".npz")]
    return model_ckpts[0] if model_ckpts else None


# ------------------------------------------------------------------------------------- tracker
class MlflowTracker:
    """One MLflow run, logged through an explicit client (the :class:`Tracker` protocol)."""

    def __init__(self, tracking_uri: str = DEFAULT_TRACKING_URI, experiment_name: str = "rnnlab",
                 run_name: str | None = None, *, log_model: bool = True,
                 parent_run_id: str | None = None, register_model: str | None = None,
                 system_metrics: bool = False,
                 flush_every_seconds: float = FLUSH_EVERY_SECONDS,
                 flush_every_metrics: int = FLUSH_EVERY_METRICS) -> None:
        self.tracking_uri = (tracking_uri or DEFAULT_TRACKING_URI).strip()
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.log_model_enabled = bool(log_model)
        self.register_model = register_model or None
        self.system_metrics = bool(system_metrics)
        self._monitor: Any = None
        self._params: dict[str, str] = {}
        self.parent_run_id = parent_run_id or None
        self.flush_every_seconds = flush_every_seconds
        self.flush_every_metrics = flush_every_metrics
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._client: Any = None
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()
        self._retry_at = 0.0  # after a failed flush, wait before trying again
        self._failures = 0
        self._warned = False  # a failed call is told once per run; the end lists what is missing
        self._unlogged: list[str] = []  # what the store did not record, in words
        self._metrics_lost = 0
        self._ended = False
        self.model_version: int | None = None
        self._cleanups: list[weakref.finalize] = []

    @classmethod
    def from_config(cls, cfg: Any) -> Tracker:
        """From an ``mlflow`` config node (mapping or dataclass); disabled -> NullTracker."""
        if not _cfg_get(cfg, "enabled", True):
            return NullTracker()
        return cls(
            tracking_uri=_cfg_get(cfg, "tracking_uri", DEFAULT_TRACKING_URI),
            experiment_name=_cfg_get(cfg, "experiment_name", "rnnlab"),
            run_name=_cfg_get(cfg, "run_name"),
            log_model=bool(_cfg_get(cfg, "log_model", True)),
            parent_run_id=_cfg_get(cfg, "parent_run_id"),
            register_model=_cfg_get(cfg, "register_model"),
            system_metrics=bool(_cfg_get(cfg, "system_metrics", False)),
        )

    # -- connection ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.tracking_uri)
        return self._client

    def check_reachable(self, timeout: float = 3.0) -> None:
        """Fail fast (a few seconds) with a one-line TrackingError if the store is unusable.

        Nothing listening, or no route, fails within ``timeout``; a server that accepts the
        connection gets :data:`~framework.tracking.http_bounds.PROBE_TIMEOUT` seconds to answer
        (it may be busy with a sweep's parallel jobs), one attempt, under a hard deadline.
        """
        check_listening(self.tracking_uri, timeout)
        with http_bounds.limits(max_retries=0, timeout=http_bounds.PROBE_TIMEOUT):
            client = self.client
            try:
                client.search_experiments(max_results=1)
            except Exception as exc:
                self._client = None
                cause = _reason(exc, _store_name(self.tracking_uri))
                raise TrackingError(
                    f"MLflow tracking server {self.tracking_uri!r} is not usable: {cause}; "
                    f"check the server, fix mlflow.tracking_uri, or set mlflow.enabled=false"
                ) from None

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client
        with _store_lock(self.tracking_uri):
            for _ in range(5):
                exp = client.get_experiment_by_name(self.experiment_name)
                if exp is not None:
                    if exp.lifecycle_stage == "deleted":
                        raise TrackingError(
                            f"MLflow experiment '{self.experiment_name}' is deleted; restore it "
                            f"or choose another mlflow.experiment_name")
                    return exp.experiment_id
                try:
                    return client.create_experiment(self.experiment_name,
                                                    artifact_location=self._artifact_location())
                except MlflowException as exc:
                    # Another process created it between our get and create: read it again.
                    if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                        raise
                time.sleep(0.2)
        raise TrackingError(f"could not get or create MLflow experiment '{self.experiment_name}'")

    def _artifact_location(self) -> str | None:
        db = _sqlite_path(self.tracking_uri)
        if db is None:
            return None  # a server decides where artifacts go
        return (db.parent / "mlartifacts" / self.experiment_name.replace("/", "_")).as_uri()

    # -- the run ------------------------------------------------------------------------------
    def start(self, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None,
              on_start: Callable[[str], None] | None = None,
              continue_run: str | None = None,
              previous_run: str | None = None) -> str | None:
        """Create the run, log ``params`` (stringified, truncated) and tags; returns the run id
        (and calls ``on_start`` with it). ``continue_run``: continue that run instead (see
        :meth:`_continue`). ``previous_run``: the run an earlier job of the same output folder
        recorded, settled first (ended KILLED if it was left RUNNING by a process that is gone).
        """
        from mlflow.entities import Param, RunTag

        params = {str(k): v for k, v in (params or {}).items()}
        all_tags: dict[str, str] = {"mlflow.user": _user(), "mlflow.source.type": "LOCAL",
                                    "mlflow.source.name": _source_name()}
        for key, param in (("cell", "cell.name"), ("dataset", "dataset.name")):
            if param in params:
                all_tags[key] = str(params[param])
        commit = git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        if self.run_name:
            all_tags["mlflow.runName"] = str(self.run_name)
        if self.parent_run_id:
            all_tags["mlflow.parentRunId"] = str(self.parent_run_id)
        all_tags[run_owner.OWNER_TAG] = run_owner.owner_tag()
        all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
        all_tags = {_truncate(k, MAX_KEY): _truncate(v, MAX_TAG_VALUE) for k, v in all_tags.items()}
        try:
            self.experiment_id = self._experiment()
            if previous_run and previous_run != continue_run:
                self._settle(previous_run, only_if_left_running=True)
            kept = self._continue(continue_run) if continue_run else None
            if kept is None:
                run = self.client.create_run(self.experiment_id, tags=all_tags,
                                             run_name=all_tags.get("mlflow.runName"))
                kept = {}
            else:
                run = kept.pop("")
                all_tags.pop("mlflow.runName", None)  # the run keeps its name
                self.client.log_batch(run.info.run_id, tags=[
                    RunTag(k, v) for k, v in all_tags.items() if not k.startswith("mlflow.")])
            self.run_id = run.info.run_id
            # redact_url: a database URL in the config (optuna.storage) may carry a password.
            # A continued run keeps the params it has (MLflow never changes a param's value).
            items = [Param(_truncate(k, MAX_KEY), _truncate(redact_url(str(v)), MAX_PARAM_VALUE))
                     for k, v in params.items() if _truncate(k, MAX_KEY) not in kept]
            self._params = {p.key: p.value for p in items}
            for i in range(0, len(items), PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, params=items[i:i + PARAMS_PER_BATCH])
        except TrackingError:
            self._abandon()
            raise
        except Exception as exc:
            self._abandon()
            where = _store_name(self.tracking_uri)
            raise TrackingError(store_fault(exc, where) or (
                f"cannot start an MLflow run in {self.tracking_uri!r}: {_reason(exc, where)}; "
                f"check the server, fix mlflow.tracking_uri, or set mlflow.enabled=false")
            ) from None
        self._last_flush = time.monotonic()
        if self.system_metrics:
            self._start_system_metrics()
        if on_start is not None:
            on_start(self.run_id)
        return self.run_id

    def _abandon(self) -> None:
        """A run created before its start failed: end it FAILED if the store lets us (else the
        next command of this output folder settles it); the job logs nothing more."""
        if self.run_id is not None:
            with contextlib.suppress(Exception):
                self.client.set_terminated(self.run_id, "FAILED")
        self.run_id = None

    def _start_system_metrics(self) -> None:
        """MLflow's sampler of CPU, memory, disk and network (``system/*`` metrics): a daemon
        thread logging every few seconds until the run ends."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        try:
            self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_EVERY,
                                                 tracking_uri=self.tracking_uri)
            self._monitor.start()
        except Exception as exc:  # psutil missing or broken: the run itself goes on
            self._monitor = None
            log.warning("MLflow system metrics are off: %s", first_line(exc))

    def log_dataset(self, record: DatasetRecord | Mapping[str, str] | None,
                    context: str = "training") -> None:
        """The run's dataset as an MLflow input (name, source, digest; ``context`` tag).

        ``record`` is a :class:`framework.tracking.run_info.DatasetRecord`, or its fields as a
        mapping (from the helper process's pipe); None: nothing."""
        if self.run_id is None or record is None:
            return
        fields = dict(record) if isinstance(record, Mapping) else dataclasses.asdict(record)
        # Bounded retries, as for metrics: MLflow's default (7 retries, growing back-off) would
        # hold every later call for minutes while a server is away.
        with http_bounds.limits(max_retries=1, timeout=10):
            self._safely("the dataset input", self._log_dataset, fields, context)

    def _log_dataset(self, fields: Mapping[str, str], context: str) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        name, source, digest = str(fields["name"]), str(fields["source"]), str(fields["digest"])
        # MLflow keeps at most 36 characters of a digest: the sha256's first 36 hex digits
        # there, the whole sha256 in the profile and in an input tag.
        profile = json.dumps({"sha256": digest})
        entity = Dataset(name=_truncate(name, 500), digest=digest[:DIGEST_CHARS],
                         source_type=_source_type(source), source=_source_json(source),
                         profile=profile)
        inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", context),
                                             InputTag(SHA256_INPUT_TAG, digest)])]
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except Exception as exc:
                # Parallel jobs of one experiment race to create the same dataset row in a
                # database store; the loser's second try finds the row and links it.
                if attempt == 2 or "unique constraint failed: datasets" not in str(exc).lower():
                    raise
                time.sleep(0.2 * (attempt + 1))

    def ui_link(self, task: str, metrics: list[str] | None = None) -> str | None:
        """Save the experiment's view for ``task`` (``metrics``: its metric columns) and return
        the link to it (None: refused)."""
        from framework.tracking.ui_view import save_run_view, ui_links

        if self.run_id is None or self.experiment_id is None:
            return None
        self.flush()  # the view's columns are read from the runs' stored metrics, this one's too
        key = save_run_view(self.client, self.experiment_id, task, metrics)
        return ui_links(self.tracking_uri, self.experiment_id, key)["runs"] if key else None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metric values; they are sent in batches, never one request per value."""
        from mlflow.entities import Metric

        if self.run_id is None or self._ended:
            return
        now_ms = int(time.time() * 1000)
        for key, value in metrics.items():
            self._buffer.append(Metric(str(key), float(value), now_ms, int(step)))
        if len(self._buffer) > MAX_BUFFERED_METRICS:
            dropped = len(self._buffer) - MAX_BUFFERED_METRICS
            del self._buffer[:dropped]
            self._metrics_lost += dropped
            log.warning("MLflow unreachable for long: dropped the %d oldest metric values",
                        dropped)
        due = (len(self._buffer) >= self.flush_every_metrics
               or time.monotonic() - self._last_flush >= self.flush_every_seconds)
        if due and time.monotonic() >= self._retry_at:
            self.flush()

    def flush(self, *, final: bool = False) -> bool:
        """Send buffered metrics; on failure keep them, warn, and return False."""
        if self.run_id is None or not self._buffer:
            self._last_flush = time.monotonic()
            return True
        sent = 0
        try:
            with http_bounds.limits(max_retries=2 if final else 1, timeout=10):
                while sent < len(self._buffer):
                    chunk = self._buffer[sent:sent + FLUSH_EVERY_METRICS]
                    self.client.log_batch(self.run_id, metrics=chunk)
                    sent += len(chunk)
        except Exception as exc:
            del self._buffer[:sent]
            self._failures += 1
            backoff = min(60.0, 2.0 * 2 ** min(self._failures, 5))
            self._retry_at = time.monotonic() + backoff
            self._failed("metric values", exc, f"; keeping {len(self._buffer)} metric values, "
                                           f"retrying in {backoff:.0f} s")
            return False
        finally:
            self._last_flush = time.monotonic()
        self._buffer.clear()
        self._failures = 0
        self._retry_at = 0.0
        return True

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if self.run_id is None:
            return
        items = [RunTag(_truncate(str(k), MAX_KEY), _truncate(str(v), MAX_TAG_VALUE))
                 for k, v in tags.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._safely("tags", self.client.log_batch, self.run_id,
                         tags=items[i:i + PARAMS_PER_BATCH])

    # -- artifacts: failures warn instead of killing a finished training run --------------------
    def _safely(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(...)``, or None when the store failed it (warned once, listed as unlogged)."""
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            self._unlogged.append(what)
            self._failed(what, exc)
            return None
        return True if out is None else out

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.run_id is not None:
            self._safely(f"the artifact {artifact_file}", self.client.log_text, self.run_id, text,
                         artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        if self.run_id is not None:
            self._safely(f"the artifact {artifact_file}", self.client.log_dict, self.run_id,
                         dict(dictionary), artifact_file)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        if self.run_id is not None:
            self._safely(f"the artifact {Path(local_path).name}", self.client.log_artifact,
                         self.run_id, str(local_path), artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        if self.run_id is not None:
            self._safely(f"the artifacts {Path(local_dir).name}/", self.client.log_artifacts,
                         self.run_id, str(local_dir), artifact_path)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        if self.run_id is not None:
            self._safely(f"the figure {artifact_file}", self.client.log_figure, self.run_id,
                         figure, artifact_file)

    def log_loss_curve(self, history: Mapping[str, Sequence[Sequence[float]]],
                       artifact_file: str) -> None:
        if self.run_id is not None:
            from framework.tracking.plots import loss_curve_figure  # imports matplotlib

            self.log_figure(loss_curve_figure(history), artifact_file)

    def log_checkpoint(self, local_path: str) -> None:
        """Log a checkpoint under ``checkpoints/`` (where :func:`download_checkpoint` looks)."""
        self.log_artifact(local_path, CHECKPOINT_ARTIFACT_DIR)

    def log_model(self, checkpoint_path: str) -> str | None:
        """Log the checkpoint as the run's MLflow logged model named ``model`` (a pyfunc);
        returns its ``models:/<model_id>`` URI, and registers it as a new version of
        ``mlflow.register_model`` when that is set.

        Does nothing (returns None) when ``mlflow.log_model`` is false.
        """
        if self.run_id is None or not self.log_model_enabled:
            return None
        from framework.tracking.pyfunc import log_pyfunc_model

        model = self._safely("the model", log_pyfunc_model, self.client, self.run_id,
                             checkpoint_path, MODEL_ARTIFACT_PATH,
                             experiment_id=self.experiment_id, params=self._params)
        if model is None:
            return None
        uri = f"models:/{model.model_id}"
        if self.register_model:
            self._safely(f"the model version of {self.register_model!r}", self._register, model)
        return uri

    def _register(self, model: Any) -> None:
        from mlflow.exceptions import MlflowException

        name = str(self.register_model)
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        # A database store resolves a models:/ source through MLflow's default tracking URI,
        # not this client's: point that at the same store for this one call.
        with _environ(MLFLOW_TRACKING_URI=self.tracking_uri):
            version = self.client.create_model_version(
                name, source=f"models:/{model.model_id}", run_id=self.run_id,
                model_id=model.model_id)
        self.model_version = int(version.version)

    def download_checkpoint(self, run_id: str, artifact: str | None = None) -> Path:
        """Download into a temp folder that is removed when the run ends (or the process exits):
        resume reads the checkpoint once, right after the download."""
        tmp = tempfile.mkdtemp(prefix="rnnlab-resume-")
        self._cleanups.append(weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True))
        return download_checkpoint(self.client, run_id, artifact, tmp)

    def _continue(self, run_id: str) -> dict[str, Any] | None:
        """The run ``run_id`` back to RUNNING, as ``{"": run, **its params}``; None (with a
        warning saying why) when it cannot be continued: a new run is made instead."""
        from mlflow.exceptions import MlflowException

        self._settle(run_id)
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            run = None
        why = None
        if run is None or run.info.lifecycle_stage != "active":
            why = "is gone from the store (deleted, or another store)"
        elif run.info.experiment_id != self.experiment_id:
            why = "belongs to another experiment"
        if why is not None:
            log.warning("MLflow run %s of the resumed checkpoint %s: this job records a new run",
                        run_id, why)
            return None
        self.client.update_run(run_id, status="RUNNING")
        if FAILURE_REASON_TAG in run.data.tags:  # the reason it stopped no longer holds
            self.client.delete_tag(run_id, FAILURE_REASON_TAG)
        return {"": run, **run.data.params}

    def _settle(self, run_id: str, *, only_if_left_running: bool = False) -> None:
        """Say what became of an earlier run (a resumed one, or the last run of this output
        folder), ending it KILLED when it was left RUNNING by a process that is gone."""
        said = run_owner.settle(self.client, run_id)
        if said and (not only_if_left_running or "left RUNNING" in said):
            print(f"rnnlab: {said}", file=sys.stderr, flush=True)

    def unlogged(self) -> str | None:
        """What the store did not record, in words (metric values, artifacts, the run's end);
        None when it recorded everything so far."""
        missing = ([f"{self._metrics_lost:,} metric values"] if self._metrics_lost else [])
        missing += list(dict.fromkeys(self._unlogged))
        return ", ".join(missing) or None

    def _failed(self, what: str, exc: BaseException, kept: str = "") -> None:
        """A store call failed while the run trains: warn once, remember what is missing."""
        cause = _reason(exc, _store_name(self.tracking_uri))
        if not self._warned:
            self._warned = True
            log.warning("MLflow could not record %s (%s)%s; training goes on and writes its "
                        "checkpoints; if anything stays unrecorded, the command exits non-zero "
                        "at the end and lists it", what, cause, kept)
        else:
            log.debug("MLflow could not record %s (%s)%s", what, cause, kept)

    def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Flush metrics, record ``reason`` (tag rnnlab.failure_reason) and close the run.

        A run whose record is incomplete (:meth:`unlogged`) ends FAILED, saying what is missing;
        if even its end cannot be recorded, the run stays RUNNING until the next command of its
        output folder (or ``resume=``) settles it (:mod:`framework.tracking.run_owner`)."""
        for cleanup in self._cleanups:
            cleanup()
        if self.run_id is None or self._ended:
            return
        if status not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"status must be FINISHED, FAILED or KILLED, got {status!r}")
        if self._monitor is not None:
            self._safely("the system metrics", self._monitor.finish)
            self._monitor = None
        self._retry_at = 0.0
        if not self.flush(final=True):
            self._metrics_lost += len(self._buffer)
            self._buffer.clear()
        missing = self.unlogged()
        if missing and status == "FINISHED":
            status, reason = "FAILED", f"the tracking store did not record {missing}"
        if reason:
            self.set_tags({FAILURE_REASON_TAG: reason})
        with http_bounds.limits(max_retries=2, timeout=10):
            done = self._safely("the run's end", self.client.set_terminated, self.run_id, status)
        if done is None and "the run's end" in self._unlogged:
            self._unlogged[self._unlogged.index("the run's end")] = (
                f"the run's end ({status}; it stays RUNNING until the next run in this output "
                f"folder or resume= marks it KILLED)")
        self._ended = True


def _reason(exc: BaseException, where: str | Path) -> str:
    """A failed store call's cause in one line; a call that got no answer in time says so."""
    for cause in (exc, exc.__cause__, exc.__context__):
        if isinstance(cause, http_bounds.StoreTimeout):
            return str(cause)
    return describe(exc, where)


def end_run(tracking_uri: str, run_id: str, status: str, reason: str) -> str | None:
    """End run ``run_id`` from a process that did not start it (the training process, when its
    helper died); returns what could not be recorded (None: all was)."""
    tracker = MlflowTracker(tracking_uri)
    tracker.run_id = run_id
    tracker.end(status, reason)
    return tracker.unlogged()


def _source_type(where: str) -> str:
    """MLflow's dataset source type of a URL (``http``) or a local path (``local``)."""
    return "http" if where.startswith(("http://", "https://")) else "local"


def _source_json(where: str) -> str:
    """The source as MLflow's ``http``/``local`` dataset sources serialise themselves."""
    if _source_type(where) == "http":
        return json.dumps({"url": where})
    return json.dumps({"uri": Path(where).as_uri()})


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _source_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    return _truncate(argv0, 500)


__all__ = ["DEFAULT_TRACKING_URI", "MlflowTracker", "check_listening", "download_checkpoint",
           "end_run", "git_commit", "make_client", "redact_url"]
