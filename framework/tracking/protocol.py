"""The tracker protocol: the calls a job makes to record its run, written once; the no-op tracker.

Three trackers implement :class:`Tracker`: :class:`~framework.tracking.tracker.MlflowTracker`
(MLflow in this process), :class:`~framework.tracking.tracker_process.TrackerProcess` (the same
calls forwarded to a helper process, which derives its forwarding from this class) and
:class:`NullTracker` (``mlflow.enabled=false``). ``tests/tracking/test_tracker_protocol.py``
checks that each has exactly these methods, with these signatures.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from framework.errors import CheckpointError

if TYPE_CHECKING:
    from framework.tracking.run_info import DatasetRecord


class Tracker(Protocol):
    """One run in a tracking store. Logging never stops training: a store that fails after the
    run started is reported as a warning and the job goes on."""

    run_id: str | None  # None until the run exists (and for good on a NullTracker)

    def check_reachable(self, timeout: float = 3.0) -> None:
        """Raise a one-line TrackingError within a few seconds if the store cannot be used, so
        that a job fails before it trains rather than after."""
        ...

    def start(self, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None,
              on_start: Callable[[str], None] | None = None,
              continue_run: str | None = None,
              previous_run: str | None = None) -> str | None:
        """Create the run with its params and tags; ``on_start(run_id)`` is called once it
        exists. Returns the run id, or None when it is not known yet (or never will be).
        ``continue_run``: a run to continue instead (a resumed job), back to RUNNING, its metric
        histories going on; a run that is gone from the store gets a new one, with a warning.
        Either run, and ``previous_run`` (the last run of the same output folder), is settled
        first: left RUNNING by a process that is gone, it is ended KILLED, and the job says so.
        """
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record metric values at ``step`` (buffered and sent in batches)."""
        ...

    def flush(self, *, final: bool = False) -> bool:
        """Send the buffered metrics now; False when they could not be sent (they are kept)."""
        ...

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the run (values as strings)."""
        ...

    def log_text(self, text: str, artifact_file: str) -> None:
        """Save ``text`` as the run's artifact ``artifact_file``."""
        ...

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Save ``dictionary`` as the run's JSON or YAML artifact ``artifact_file``."""
        ...

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifacts (under ``artifact_path``)."""
        ...

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Copy a local folder's files into the run's artifacts (under ``artifact_path``)."""
        ...

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Save a matplotlib figure as the run's image artifact ``artifact_file``."""
        ...

    def log_loss_curve(self, history: Mapping[str, Sequence[Sequence[float]]],
                       artifact_file: str) -> None:
        """Draw ``history``'s loss curves (name -> ``(step, value)`` pairs) as the run's image
        artifact ``artifact_file``."""
        ...

    def log_checkpoint(self, local_path: str) -> None:
        """Log a checkpoint file where :meth:`download_checkpoint` finds it again."""
        ...

    def log_model(self, checkpoint_path: str) -> str | None:
        """Log a checkpoint as the run's served model; its ``models:/`` URI, or None when that
        is off or not known yet."""
        ...

    def log_dataset(self, record: DatasetRecord | Mapping[str, str] | None,
                    context: str = "training") -> None:
        """Record the run's dataset (name, source, sha256) as an input; None: nothing to
        record."""
        ...

    def ui_link(self, task: str, metrics: list[str] | None = None) -> str | None:
        """A link to the tracking UI's view of the experiment's ``task`` runs with ``metrics``
        as columns, once everything sent before is logged; None when there is none."""
        ...

    def download_checkpoint(self, run_id: str, artifact: str | None = None) -> Path:
        """A local copy of a checkpoint logged by run ``run_id`` (for ``resume=<run id>``)."""
        ...

    def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Send what is left and close the run as FINISHED, FAILED or KILLED (``reason``:
        why, as a tag). A run the store did not record completely ends FAILED, saying what is
        missing."""
        ...

    def unlogged(self) -> str | None:
        """What the store did not record (metric values, artifacts, the model, the run's end),
        in words; None when it recorded everything. Complete once :meth:`end` returned."""
        ...


def tracker_calls() -> dict[str, inspect.Signature]:
    """The protocol's methods, in the order written, with their signatures."""
    return {name: inspect.signature(fn) for name, fn in vars(Tracker).items()
            if inspect.isfunction(fn) and not name.startswith("_")}


class NullTracker:
    """``mlflow.enabled=false``: every call of the protocol, doing nothing."""

    run_id: str | None = None

    def check_reachable(self, timeout: float = 3.0) -> None:
        return None

    def start(self, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None,
              on_start: Callable[[str], None] | None = None,
              continue_run: str | None = None,
              previous_run: str | None = None) -> str | None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        return None

    def flush(self, *, final: bool = False) -> bool:
        return True

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        return None

    def log_text(self, text: str, artifact_file: str) -> None:
        return None

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        return None

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        return None

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        return None

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        return None

    def log_loss_curve(self, history: Mapping[str, Sequence[Sequence[float]]],
                       artifact_file: str) -> None:
        return None

    def log_checkpoint(self, local_path: str) -> None:
        return None

    def log_model(self, checkpoint_path: str) -> str | None:
        return None

    def log_dataset(self, record: DatasetRecord | Mapping[str, str] | None,
                    context: str = "training") -> None:
        return None

    def ui_link(self, task: str, metrics: list[str] | None = None) -> str | None:
        return None

    def download_checkpoint(self, run_id: str, artifact: str | None = None) -> Path:
        raise CheckpointError(f"resume from MLflow run '{run_id}' needs mlflow.enabled=true")

    def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
        return None

    def unlogged(self) -> str | None:
        return None


__all__ = ["NullTracker", "Tracker", "tracker_calls"]
