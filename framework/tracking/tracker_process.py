"""MLflow tracking in a helper process, so that importing MLflow overlaps the job instead of
delaying it.

``import mlflow`` and opening a sqlite store cost about 3.5 s of CPU (MLflow imports pandas,
FastAPI, its GenAI modules, SQLAlchemy and alembic), more than a short job's whole training. A
single job started from the command line therefore starts this helper first thing
(:func:`prestart`, before Hydra composes the config): it imports MLflow on another core while the
job composes its config, loads data and trains. The job talks to it through a pipe of JSON lines,
one call of the :class:`~framework.tracking.protocol.Tracker` protocol per line, run in order by an
:class:`~framework.tracking.tracker.MlflowTracker` in the helper. Nothing is pickled. The calls
that need nothing but sending are forwarded as the protocol declares them (no list of them here);
the few that do more in the job (wait for an answer, keep a callback, save a figure) are written
out. The helper answers on its stdout: the run id once the run exists, a downloaded checkpoint's
path, or a tracking error (raised in the job at its next call; a tracking server with nothing
listening is found before training, by a plain TCP connect).

Signals: the helper runs in its own session (a Ctrl-C or a closed terminal reaches the job only)
and ignores SIGINT, SIGTERM and SIGHUP sent to it; the job decides how the run ends and says so
with ``end``, then waits for the helper to finish.
If the job dies without that (SIGKILL, a crash), the helper reads end-of-file and ends the run
FAILED, saying why.

Sweeps keep the tracker in the job's process: their workers run many jobs each (MLflow is
imported once per worker) and already use every core.
"""

from __future__ import annotations

import atexit
import dataclasses
import inspect
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from framework import errors
from framework.errors import TrackingError
from framework.plugins import load_plugins
from framework.tracking.prestart import spawn_helper
from framework.tracking.protocol import NullTracker, Tracker, tracker_calls
from framework.tracking.run_owner import OWNER_PID_ENV
from framework.tracking.spare import SpareProcess
from framework.tracking.store_errors import sqlite_read_only
from framework.tracking.tracker import MlflowTracker, _sqlite_path, _store_name, check_listening

ORPHANED = "the training process exited without ending the run"
_STARTING = ("check_reachable", "start")  # calls whose failure means no run is tracked

_prestarted: subprocess.Popen | None = None


# ---------------------------------------------------------------------------- the job's side
def prestart(argv: Sequence[str]) -> None:
    """Start the helper now if ``argv`` looks like one tracked job
    (:func:`~framework.tracking.prestart.helper_wanted`)."""
    if _prestarted is None:
        adopt_prestarted(spawn_helper(argv))


def adopt_prestarted(proc: subprocess.Popen | None) -> None:
    """Keep a helper started by :func:`~framework.tracking.prestart.spawn_helper` for the job's
    tracker (it is stopped at exit if no job takes it)."""
    global _prestarted
    if proc is None:
        return
    if _prestarted is not None:  # one helper per process: the later one is not needed
        proc.kill()
        proc.wait()
        return
    _prestarted = proc
    atexit.register(discard_prestarted)


def discard_prestarted() -> None:
    """Stop a prestarted helper that no job took (it holds no run: nothing is lost)."""
    global _prestarted
    proc, _prestarted = _prestarted, None
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def open_tracker(cfg: Any, *, multirun: bool) -> Tracker:
    """The tracker a job logs through: none, the prestarted helper, or MLflow in this process."""
    global _prestarted
    helper_wanted = bool(getattr(cfg, "helper_process", True)) and not multirun
    if not getattr(cfg, "enabled", True) or not helper_wanted or _prestarted is None:
        discard_prestarted()
        return MlflowTracker.from_config(cfg)
    proc, _prestarted = _prestarted, None
    return TrackerProcess(proc, _settings(cfg))


def _settings(cfg: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(cfg)


def _jsonable(value: Any) -> Any:
    """A call's argument as JSON can carry it: mappings with string keys, lists, a dataclass's
    fields, paths and NumPy scalars as plain values, anything else as its string."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if getattr(value, "shape", None) == ():  # a NumPy scalar or 0-d array
        return _jsonable(value.item())
    return str(value)


class TrackerProcess:
    """The :class:`Tracker` protocol, forwarded to a helper process (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen | SpareProcess, settings: Mapping[str, Any]) -> None:
        self._proc = proc
        self._spare = isinstance(proc, SpareProcess)  # warm: MLflow and matplotlib imported
        self._inbox = b""
        self._error: str | None = None  # a tracking error not raised yet
        self._figures: str | None = None  # temp folder for figures saved as PNG
        self._on_start: Callable[[str], None] | None = None
        self._ended = False
        self._dead = False  # the helper exited before the end
        self._exit_status: int | None = None
        self._unlogged: str | None = None  # what the store did not record, once ended
        self._start_failed = False  # the helper could not start the run: nothing is tracked
        self._end_heard = False  # the helper answered `end` (it then exits by itself)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.tracking_uri = str(settings.get("tracking_uri", ""))
        self._send("init", _jsonable(settings))

    # -- the pipe -----------------------------------------------------------------------------
    def _send(self, op: str, *args: Any, **kwargs: Any) -> None:
        if self._dead:
            return
        line = json.dumps({"op": op, "args": list(args), "kwargs": kwargs}) + "\n"
        try:
            self._proc.stdin.write(line.encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):  # the helper exited
            self._lost()

    def _lost(self) -> None:
        """The helper died before the end: training goes on untracked (its checkpoints are
        on disk), with one warning."""
        if not self._dead:
            self._dead = True
            self._exit_status = self._proc.wait()
            print(f"rnnlab: warning: the MLflow helper process {self._exited()}; training "
                  f"goes on without tracking, checkpoints are still written", file=sys.stderr)

    def _read(self, timeout: float | None) -> list[dict[str, Any]]:
        """Messages the helper sent; waits up to ``timeout`` (None: for at least one)."""
        if self._dead:
            return []
        fd = self._proc.stdout.fileno()
        messages: list[dict[str, Any]] = []
        while not messages:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the helper exited: expected after end, a fault before it
                if not self._ended:
                    self._lost()
                break
            self._inbox += chunk
            *lines, self._inbox = self._inbox.split(b"\n")
            messages += [json.loads(line) for line in lines if line]
            timeout = 0 if timeout is not None else None
        for message in messages:
            self._note(message)
        return messages

    def _note(self, message: Mapping[str, Any]) -> None:
        if "run_id" in message:
            self.run_id, self.experiment_id = message["run_id"], message.get("experiment_id")
            if self._on_start is not None and self.run_id:
                self._on_start(self.run_id)
        elif "unlogged" in message:
            self._unlogged, self._end_heard = message["unlogged"], True
        elif "error" in message and not message.get("reply"):
            self._error = self._error or message["error"]
            self._start_failed = self._start_failed or message.get("op") in _STARTING

    def _raise_pending(self) -> None:
        self._read(0)
        if self._error is not None:
            message, self._error = self._error, None
            raise TrackingError(message)

    def _call(self, op: str, *args: Any, **kwargs: Any) -> None:
        self._raise_pending()
        self._send(op, *args, **kwargs)

    # -- the calls that do more than send ------------------------------------------------------
    def check_reachable(self, timeout: float = 3.0) -> None:
        """What needs no MLflow fails here, before training: a server with nothing listening
        (a TCP connect), a sqlite store that cannot be written; the helper then checks the
        store itself."""
        check_listening(self.tracking_uri, timeout)
        db = _sqlite_path(self.tracking_uri)
        fault = sqlite_read_only(db, _store_name(self.tracking_uri)) if db else None
        if fault:
            raise TrackingError(fault)
        if urlparse(self.tracking_uri).scheme in ("http", "https"):
            # A server that answers but not usefully (garbage, redirects, silence) must stop
            # the job before it trains: wait for the helper's probe (bounded there).
            self._ask("check_reachable", timeout)
        else:
            self._call("check_reachable", timeout)

    def start(self, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None,
              on_start: Callable[[str], None] | None = None,
              continue_run: str | None = None,
              previous_run: str | None = None) -> str | None:
        """Ask for the run; ``on_start(run_id)`` is called once it exists (returns None)."""
        self._on_start = on_start
        call = dict(params={str(k): str(v) for k, v in (params or {}).items()},
                    tags={str(k): str(v) for k, v in (tags or {}).items()},
                    continue_run=continue_run, previous_run=previous_run)
        if urlparse(self.tracking_uri).scheme in ("http", "https"):
            # As for the probe: a server that fails the run's creation stops the job before it
            # trains, whatever the timing (the helper has imported MLflow by now).
            self._ask("start", **call)
        else:
            self._call("start", **call)
        return None

    def flush(self, *, final: bool = False) -> bool:
        """Sent without waiting: True (a failed flush is the helper's warning)."""
        self._call("flush", final=final)
        return True

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Saved here as a PNG (figures stay in this process), logged there as a file."""
        if self._figures is None:
            self._figures = tempfile.mkdtemp(prefix="rnnlab-figures-")
        folder, name = os.path.split(artifact_file)
        path = Path(self._figures) / name
        figure.savefig(path)
        self.log_artifact(str(path), folder or None)

    def log_loss_curve(self, history: Mapping[str, Sequence[Sequence[float]]],
                       artifact_file: str) -> None:
        """Drawn by a spare helper (it has imported matplotlib while waiting), else here: a
        fresh helper is still importing MLflow, and drawing there would make the job wait."""
        if self._spare:
            self._call("log_loss_curve", _jsonable(history), artifact_file)
        else:
            from framework.tracking.plots import loss_curve_figure  # imports matplotlib

            self.log_figure(loss_curve_figure(history), artifact_file)

    def download_checkpoint(self, run_id: str, artifact: str | None = None) -> Path:
        return Path(self._ask("download_checkpoint", run_id, artifact))

    def ui_link(self, task: str, metrics: list[str] | None = None) -> str | None:
        """Waits for the helper (it has then logged everything sent before)."""
        if self._dead:
            return None
        link = self._ask("ui_link", task, metrics)
        return None if link == "None" else link

    def _ask(self, op: str, *args: Any, **kwargs: Any) -> str:
        """Send a call and wait for its answer (the value as a string)."""
        self._call(op, *map(_jsonable, args), **{k: _jsonable(v) for k, v in kwargs.items()},
                   reply=True)
        while True:
            for message in self._read(None):
                if message.get("reply"):
                    if "error" in message:
                        kind = getattr(errors, message.get("kind", ""), TrackingError)
                        raise kind(message["error"])
                    return str(message["value"])
            if self._error is not None:
                self._raise_pending()
            if self._dead:
                raise TrackingError(f"the MLflow helper process exited before answering {op}; "
                                    f"see the lines above")

    def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """End the run and wait until the helper has sent everything (then it exits)."""
        if self._ended:
            return
        self._ended = True
        self._send("end", status, reason)
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        while self._proc.stdout is not None and self._read(None):
            pass
        self._proc.wait()
        if not self._dead and not self._end_heard:  # it died before it could end the run
            self._dead, self._exit_status = True, self._proc.returncode
        if self._dead:
            self._end_for_the_dead_helper(status, reason)
        if self._error is not None and self._start_failed and status == "FINISHED":
            # The run was never created, and the job ended before it heard: the same one-line
            # error (exit status 2) as when the job hears it during training.
            message, self._error = self._error, None
            self._cleanup()
            raise TrackingError(message)
        if self._error is not None:  # the job's outcome stands; the store's problem is told
            print(f"rnnlab: warning: {self._error}", file=sys.stderr)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._figures is not None:
            shutil.rmtree(self._figures, ignore_errors=True)

    def _end_for_the_dead_helper(self, status: str, reason: str | None) -> None:
        """The helper died during the run: this process ends the run itself (importing MLflow
        now), FAILED unless the job already failed or was stopped, saying why."""
        died = f"the MLflow helper process {self._exited()} during the run"
        if self.run_id is None:
            self._unlogged = f"the whole run ({died} before the run was created)"
            return
        self._unlogged = f"everything the job sent after {died}"
        try:
            from framework.tracking.tracker import end_run

            more = end_run(self.tracking_uri, self.run_id,
                           "FAILED" if status == "FINISHED" else status,
                           f"{reason}; {died}" if reason else died)
        except Exception as exc:  # the store itself is gone too: the next command settles it
            more = f"the run's end ({type(exc).__name__}: {exc})"
        if more:
            self._unlogged += f", {more}"

    def _exited(self) -> str:
        # A spare helper is not this process's child: its exit status is not known here.
        code = self._exit_status
        return "exited" if code is None else f"exited (status {code})"

    def unlogged(self) -> str | None:
        """What the store did not record, as the helper (or this process) found at the end."""
        return self._unlogged


def _forwarded(name: str, signature: inspect.Signature) -> Callable[..., None]:
    """A method that checks a call against the protocol's ``signature`` (a wrong call is a
    TypeError here, as on any tracker) and sends it to the helper without waiting."""

    def forward(self: TrackerProcess, *args: Any, **kwargs: Any) -> None:
        signature.bind(self, *args, **kwargs)
        self._call(name, *map(_jsonable, args), **{k: _jsonable(v) for k, v in kwargs.items()})

    forward.__name__ = forward.__qualname__ = name
    forward.__signature__ = signature  # type: ignore[attr-defined]
    forward.__doc__ = f"Sent to the helper's tracker: :meth:`Tracker.{name}`."
    return forward


# Every protocol call the class does not write out is forwarded as it is declared.
for _name, _signature in tracker_calls().items():
    if _name not in vars(TrackerProcess):
        setattr(TrackerProcess, _name, _forwarded(_name, _signature))


# ------------------------------------------------------------------------- the helper's side
def serve() -> None:
    """The helper's loop on its stdin and stdout: import MLflow, then run each call it reads
    until end-of-file."""
    _ignore_signals()
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed here goes to stderr, never into the replies
    _quiet_logging()
    import mlflow  # noqa: F401  (the slow part, while the job composes and trains)

    _run_calls(sys.stdin.buffer, replies.write, owner=os.getppid())
    replies.close()
    _exit()


def serve_spare() -> None:
    """Be a spare helper (:mod:`~framework.tracking.spare`): import MLflow and its store first,
    wait for one job, then serve it as :func:`serve` serves the job that started it."""
    from framework.tracking import spare

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _quiet_logging()
    job = spare.wait_for_job(_warm_up)
    if job is None:
        _exit()
    conn, _ = job
    _ignore_signals()  # from now on it holds a run: only the job decides how it ends
    os.dup2(2, 1)
    _run_calls(conn.makefile("rb"), conn.sendall, owner=int(job[1]["owner"]))
    conn.close()
    _exit()


def _warm_up() -> None:
    """What every tracked job's helper imports, done before a job comes: MLflow's store and
    model code, matplotlib, and rnnlab's own plugins (the ones a job's environment may add, from
    ``RNNLAB_PLUGIN_PATH`` or entry points, are loaded once the job has come)."""
    import mlflow.pyfunc  # noqa: F401
    import omegaconf  # noqa: F401
    import sqlalchemy.orm
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: F401

    import framework.tracking.plots  # noqa: F401  (matplotlib)
    import framework.tracking.pyfunc  # noqa: F401
    import framework.training.checkpoint.reading  # noqa: F401
    from framework import ROOT
    from framework.plugins import FOLDERS, load_builtins, load_folder
    from framework.registry import ALL

    sqlalchemy.orm.configure_mappers()
    for registry in ALL.values():
        load_builtins(registry)
    for folder in FOLDERS:  # the checkout's own plugin folders (the digest covers them)
        load_folder(ROOT / folder)


def _ignore_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def _quiet_logging() -> None:
    # The tracker's warnings (a failed flush, a lost connection) reach the job's terminal in the
    # job's own log format.
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")


def _exit() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the slow teardown of MLflow's modules


def _run_calls(lines: Iterable[bytes], send: Callable[[bytes], Any], owner: int) -> None:
    """Run each call read from ``lines`` on the tracker, answering through ``send``; the runs
    it starts belong to process ``owner`` (the job)."""
    os.environ[OWNER_PID_ENV] = str(owner)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    def reply(message: Mapping[str, Any]) -> None:
        try:
            send(json.dumps(message).encode() + b"\n")
        except (BrokenPipeError, OSError):
            pass

    calls = set(tracker_calls())
    tracker: Tracker = NullTracker()
    ended = False
    for line in lines:
        message = json.loads(line)
        op, args, kwargs = message["op"], message["args"], message["kwargs"]
        wants_reply = bool(kwargs.pop("reply", False))
        try:
            if op == "init":
                tracker = MlflowTracker.from_config(args[0])
                continue
            if op not in calls:
                raise TrackingError(f"the MLflow helper got an unknown call {op!r}")
            value = getattr(tracker, op)(*args, **kwargs)
            if op == "start":
                reply({"run_id": value, "experiment_id": getattr(tracker, "experiment_id", None)})
                load_plugins()  # what logging the model needs, while the job trains
            if op == "end":
                ended = True
                reply({"unlogged": tracker.unlogged()})
            if wants_reply:
                reply({"reply": True, "value": str(value)})
        except errors.RnnlabError as exc:
            reply({"error": str(exc), "kind": type(exc).__name__, "reply": wants_reply,
                   "op": op})
            if op in ("check_reachable", "start"):  # no usable store: the rest is not sent
                tracker = NullTracker()
        except Exception as exc:  # a fault of MLflow's: told in one line, the job goes on
            reply({"error": f"MLflow {op} failed: {type(exc).__name__}: {exc}",
                   "reply": wants_reply, "op": op})
    if not ended:
        tracker.end("FAILED", ORPHANED)


if __name__ == "__main__":
    serve_spare() if sys.argv[1:] == ["--spare"] else serve()


__all__ = ["TrackerProcess", "adopt_prestarted", "discard_prestarted", "open_tracker", "prestart",
           "serve", "serve_spare"]
