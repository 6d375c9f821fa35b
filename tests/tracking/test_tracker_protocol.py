"""One tracker interface: the MLflow tracker, the helper-process proxy and the no-op tracker have
exactly the methods of the ``Tracker`` protocol, with its signatures; the proxy forwards the
calls it does not write out as the protocol declares them."""

from __future__ import annotations

import inspect
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from framework.tracking.protocol import NullTracker, Tracker, tracker_calls
from framework.tracking.run_info import DatasetRecord
from framework.tracking.tracker import MlflowTracker
from framework.tracking.tracker_process import TrackerProcess

IMPLEMENTATIONS = (NullTracker, MlflowTracker, TrackerProcess)


def public_methods(cls: type) -> dict[str, object]:
    """Public instance methods of ``cls`` and its bases (constructors such as a classmethod
    ``from_config``, and properties, are not calls on a tracker)."""
    found = {}
    for klass in reversed(cls.__mro__[:-1]):  # object's own methods are not the tracker's
        for name, value in vars(klass).items():
            if not name.startswith("_") and inspect.isfunction(value):
                found[name] = value
    return found


def described(signature: inspect.Signature) -> list[tuple[object, ...]]:
    """Names, kinds, defaults and annotations (as written) of the parameters, and the return."""
    return [(p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()] + [
        ("return", signature.return_annotation)]


def test_the_protocol_lists_every_call_once():
    calls = tracker_calls()
    assert {"start", "log_metrics", "log_model", "download_checkpoint", "end"} <= set(calls)
    assert "run_id" in Tracker.__annotations__


@pytest.mark.parametrize("cls", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_an_implementation_has_exactly_the_protocol_methods(cls):
    assert sorted(public_methods(cls)) == sorted(tracker_calls())


@pytest.mark.parametrize("cls", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_an_implementation_has_the_protocol_signatures(cls):
    wrong = {name: (str(inspect.signature(getattr(cls, name))), str(signature))
             for name, signature in tracker_calls().items()
             if described(inspect.signature(getattr(cls, name))) != described(signature)}
    assert not wrong, f"{cls.__name__} differs from the protocol: {wrong}"


def test_a_different_signature_is_caught():
    class Drifted(NullTracker):
        def log_text(self, text: str, artifact_file: str, extra: int = 0) -> None:
            return None

    sig = inspect.signature(Drifted.log_text)
    assert described(sig) != described(tracker_calls()["log_text"])


class _Pipe:
    """The job's ends of a helper that never answers: what the proxy writes is kept."""

    def __init__(self) -> None:
        self.stdin = io.BytesIO()
        read, self._write = os.pipe()
        self.stdout = os.fdopen(read, "rb")

    def sent(self) -> list[dict]:
        return [json.loads(line) for line in self.stdin.getvalue().splitlines()]

    def close(self) -> None:
        self.stdout.close()
        os.close(self._write)


@pytest.fixture()
def proxy():
    pipe = _Pipe()
    yield TrackerProcess(pipe, {"tracking_uri": "sqlite:///x.db"}), pipe  # type: ignore[arg-type]
    pipe.close()


def test_the_proxy_forwards_a_call_as_the_protocol_declares_it(proxy):
    tracker, pipe = proxy
    tracker.log_metrics({"loss": np.float32(1.5)}, np.int64(3))
    tracker.log_dataset(DatasetRecord("dinos", "https://x/dinos.txt", "ab" * 32))
    tracker.log_artifact(local_path=Path("a.txt"))
    init, metrics, dataset, artifact = pipe.sent()
    assert init["op"] == "init"
    assert metrics == {"op": "log_metrics", "args": [{"loss": 1.5}, 3], "kwargs": {}}
    assert dataset["args"] == [{"name": "dinos", "source": "https://x/dinos.txt",
                                "digest": "ab" * 32}]
    assert artifact == {"op": "log_artifact", "args": [], "kwargs": {"local_path": "a.txt"}}


def test_the_proxy_refuses_a_call_the_protocol_does_not_allow(proxy):
    tracker, pipe = proxy
    with pytest.raises(TypeError):
        tracker.log_text("only the text")
    with pytest.raises(TypeError):
        tracker.log_metrics({"loss": 1.0}, 1, "extra")
    with pytest.raises(AttributeError):
        tracker.log_param("a", 1)  # not a protocol call: never sent
    assert [m["op"] for m in pipe.sent()] == ["init"]
