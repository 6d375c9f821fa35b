"""Bounded time for every call to an MLflow tracking server: MLflow's HTTP settings and a deadline.

MLflow's own defaults let one call to a server that misbehaves take minutes: a 120 s timeout per
request, 7 retries with a growing back-off, and a ``Retry-After`` header obeyed however long it
asks for. rnnlab sets ``MLFLOW_HTTP_REQUEST_TIMEOUT``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``, ``MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`` and
``MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER`` for its process and the tracking helper process, unless
the user set them (the user's value is then used everywhere, unchanged; the helper process
inherits the environment, so it follows the same rule). A timeout bounds each
socket wait, not a whole answer: a server that sends one byte every few seconds would hold a call
for ever. So each call to an http(s) store also runs under a deadline derived from the same
settings: when it passes, the call fails with :class:`StoreTimeout`, which the tracker handles
like any other failed call. In the main thread the deadline is a ``SIGALRM`` timer that
interrupts the call where it waits; signals reach the main thread only, so in any other thread
(a Ray actor's, a thread pool's) the call runs in a worker thread that is waited for until the
deadline and then abandoned (a daemon thread: it cannot keep the process alive, and it ends when
the server closes the connection or its socket times out).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
BACKOFF_FACTOR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
BACKOFF_JITTER = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"
RETRY_AFTER = "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER"
# rnnlab's values for calls made while a run trains (seconds, counts).
DEFAULTS = {TIMEOUT: "10", MAX_RETRIES: "1", BACKOFF_FACTOR: "1", BACKOFF_JITTER: "0",
            RETRY_AFTER: "false"}
PROBE_TIMEOUT = 15  # the start-of-run probe: a server busy with a sweep's jobs may be slow
MARGIN = 2.0  # seconds of a deadline beyond the requests' own bounds (connecting, parsing)
UPLOAD_BYTES_PER_SECOND = 1_000_000  # an artifact upload's deadline grows with its size

_ours: dict[str, str] = {}  # the values rnnlab wrote: any other value is the user's


def user_set(name: str) -> bool:
    """Did the user set ``name`` (to a value rnnlab did not write)?"""
    value = os.environ.get(name, "")
    return value != "" and value != _ours.get(name)


def _set(name: str, value: str) -> None:
    _ours[name] = value
    os.environ[name] = value


class _Expired(BaseException):
    """The timer's signal, raised where the call is waiting: a BaseException, so that no
    ``except Exception`` (urllib3 retries OSError and TimeoutError) swallows or retries it."""


class StoreTimeout(Exception):
    """A call to the tracking server did not finish within its deadline."""


def apply_defaults() -> None:
    """rnnlab's HTTP settings into this process's environment, where the user set none; and
    urllib3's per-retry warnings off the console (rnnlab warns once about a failing store, and
    names at the end what was not logged)."""
    import logging

    for name, value in DEFAULTS.items():
        if not user_set(name):
            _set(name, value)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _number(name: str) -> float:
    try:
        return max(0.0, float(os.environ.get(name) or DEFAULTS[name]))
    except ValueError:
        return float(DEFAULTS[name])


def call_budget(extra_bytes: int = 0) -> float:
    """Seconds one store call may take with the current settings: every attempt's connect and
    read timeouts, the back-off between attempts, a margin, and time for ``extra_bytes`` of
    upload."""
    timeout, retries = _number(TIMEOUT), int(_number(MAX_RETRIES))
    factor = _number(BACKOFF_FACTOR) + _number(BACKOFF_JITTER)
    backoff = sum(min(120.0, factor * 2 ** i) for i in range(retries))
    return ((retries + 1) * 2 * timeout + backoff + MARGIN
            + extra_bytes / UPLOAD_BYTES_PER_SECOND)


@contextlib.contextmanager
def limits(max_retries: int, timeout: float) -> Iterator[None]:
    """Tighter retries and timeout for the calls inside (a probe, a flush); a setting the user
    chose is left as it is."""
    wanted = {name: value for name, value in
              ((MAX_RETRIES, str(int(max_retries))), (TIMEOUT, str(int(max(1, timeout)))))
              if not user_set(name)}
    old = {name: os.environ.get(name) for name in wanted}
    for name, value in wanted.items():
        _set(name, value)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                _set(name, value)


_active = threading.local()


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`StoreTimeout` from the code inside once ``seconds`` have passed.

    Only in the main thread (where signals arrive); elsewhere, and inside another deadline,
    the code runs as it is (:func:`call_within` bounds a call in any thread). A timer someone
    else set (a test runner's) is put back afterwards, less the time spent here.
    """
    if threading.current_thread() is not threading.main_thread() or getattr(_active, "on",
                                                                             False):
        yield
        return
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer and outer <= seconds:  # the other timer fires first anyway
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise _Expired

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expired)
    _active.on = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Expired:
        raise StoreTimeout(f"{what} got no whole answer within {seconds:.3g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _active.on = False
        if outer:
            signal.setitimer(signal.ITIMER_REAL,
                             max(0.001, outer - (time.monotonic() - started)))


def _in_worker(seconds: float, what: str, fn: Callable[..., T], *args: Any,
               **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a daemon worker thread, waited for ``seconds``; past them,
    :class:`StoreTimeout` (the worker is abandoned)."""
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()  # the caller's context variables, e.g. MLflow's

    def work() -> None:
        try:
            outcome["value"] = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # handed to the caller, who re-raises it
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"rnnlab-store-call:{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StoreTimeout(f"{what} got no whole answer within {seconds:.3g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def call_within(seconds: float, what: str, fn: Callable[..., T], *args: Any,
                **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, or :class:`StoreTimeout` once ``seconds`` have passed, in any
    thread: the main thread uses :func:`deadline`'s timer, any other thread a worker thread
    waited for with a timeout. Inside another deadline of this thread the call runs as it is
    (the outer deadline bounds it)."""
    if getattr(_active, "on", False):
        return fn(*args, **kwargs)
    if threading.current_thread() is threading.main_thread():
        with deadline(seconds, what):
            return fn(*args, **kwargs)
    _active.on = True
    try:
        return _in_worker(seconds, what, fn, *args, **kwargs)
    finally:
        _active.on = False


def _local_bytes(args: tuple[object, ...]) -> int:
    """The size of the local files or folders named among a call's arguments (an upload)."""
    total = 0
    for arg in args:
        if not isinstance(arg, (str, os.PathLike)):
            continue
        try:
            path = os.fspath(arg)
            if os.path.isfile(path):
                total += os.path.getsize(path)
            elif os.path.isdir(path):
                total += sum(os.path.getsize(os.path.join(root, name))
                             for root, _, names in os.walk(path) for name in names)
        except (OSError, ValueError, TypeError):
            continue
    return total


class BoundedClient:
    """An ``MlflowClient`` of an http(s) server whose every method call has a bounded time
    (:func:`call_within`, in any thread; uploads get time for their size too); everything else
    passes through."""

    def __init__(self, client: object) -> None:
        self._client = client

    def __getattr__(self, name: str) -> object:
        value = getattr(self._client, name)
        if name.startswith("_") or not callable(value):
            return value

        def call(*args: object, **kwargs: object) -> object:
            budget = call_budget(_local_bytes((*args, *kwargs.values())))
            return call_within(budget, f"MLflow {name}", value, *args, **kwargs)

        call.__name__ = name
        return call


__all__ = ["BoundedClient", "DEFAULTS", "PROBE_TIMEOUT", "StoreTimeout", "apply_defaults",
           "call_budget", "call_within", "deadline", "limits", "user_set"]
