"""Store calls have a bounded time in any thread, not only in the main one (a Ray actor's jobs,
a thread pool): the SIGALRM deadline cannot reach other threads, so there the call runs in a
worker thread that is given up on at the deadline."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from framework.tracking import http_bounds
from framework.tracking.http_bounds import StoreTimeout, call_within


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def _never_answered(address: tuple[str, int]) -> bytes:
    """Wait, with no socket timeout, for an answer that never comes."""
    with socket.create_connection(address) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return conn.recv(1)


def _in_thread(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` run in a new thread: (its result or the exception it raised, seconds taken)."""
    box: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            box["out"] = fn()
        except BaseException as exc:
            box["out"] = exc
        box["took"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the call was not bounded"
    return box["out"], box["took"]


def test_a_call_to_a_server_that_never_answers_is_bounded_in_a_non_main_thread(silent_server):
    out, took = _in_thread(lambda: call_within(0.5, "MLflow log_batch", _never_answered,
                                               silent_server))
    assert isinstance(out, StoreTimeout), out
    assert str(out) == "MLflow log_batch got no whole answer within 0.5 s"
    assert took < 3.0, took


def test_a_bounded_call_in_a_thread_returns_its_value_and_raises_its_error():
    assert _in_thread(lambda: call_within(5, "MLflow get_run", lambda a, b=0: a + b, 2, b=3))[0] \
        == 5

    def boom() -> None:
        raise ConnectionResetError("reset by peer")

    out, _ = _in_thread(lambda: call_within(5, "MLflow get_run", boom))
    assert isinstance(out, ConnectionResetError)


def test_the_main_thread_still_uses_the_timer_and_nested_calls_run_as_they_are(silent_server):
    started = time.monotonic()
    with pytest.raises(StoreTimeout):
        call_within(0.5, "MLflow log_batch", _never_answered, silent_server)
    assert time.monotonic() - started < 3.0
    # No worker thread was started for it: the timer interrupted the wait in this thread.
    assert not [t for t in threading.enumerate() if t.name.startswith("rnnlab-store-call")]
    # Inside a deadline, an inner bounded call does not start a second timer.
    with http_bounds.deadline(5, "outer"):
        assert call_within(0.01, "inner", lambda: (time.sleep(0.05), 7)[1]) == 7


@pytest.mark.slow
def test_a_bounded_client_in_a_thread_gives_up_on_a_trickling_server_at_its_budget(
        monkeypatch):
    """The real MLflow client, from a thread, against a server that sends one byte every 0.2 s
    (each socket wait is short, so MLflow's timeout never fires): the call ends at its budget."""
    from mlflow import MlflowClient

    from tests.tracking.fault_server import FaultProxy

    for name, value in {http_bounds.TIMEOUT: "1", http_bounds.MAX_RETRIES: "0",
                        http_bounds.BACKOFF_FACTOR: "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(http_bounds, "MARGIN", 0.0)  # the budget: 1 attempt x 2 x 1 s = 2 s
    proxy = FaultProxy("127.0.0.1:9", mode="trickle")
    try:
        client = http_bounds.BoundedClient(MlflowClient(tracking_uri=proxy.url))
        out, took = _in_thread(lambda: client.search_experiments(max_results=1))
    finally:
        proxy.stop()
    assert isinstance(out, StoreTimeout), repr(out)
    assert "MLflow search_experiments got no whole answer within 2 s" == str(out)
    assert took < http_bounds.call_budget() + 3, took
    assert os.environ[http_bounds.TIMEOUT] == "1"
