"""A trained checkpoint as an MLflow pyfunc model whose answers come from its task.

The model is saved with MLflow's "models from code": ``python_model`` is the path of
``framework/tracking/pyfunc_model.py``, a tiny file that calls ``mlflow.models.set_model(...)``; the
checkpoint ``.npz`` is an artifact.  Nothing is pickled, so loading the model never unpickles
(project rule).  The ``framework/`` package and the ``cells/`` plugin folder are copied into the
model (``code_paths``), so ``mlflow models serve`` works from any directory without installing
rnnlab.

The input is a pandas DataFrame with the columns of the checkpoint's task (``Task.input_columns``:
a language model's ``prompt`` and optional ``num_samples``, ``length``, ``temperature``,
``seed``); the task answers it (``Task.serve``) with a list of strings.  Served: ``POST
/invocations`` with ``{"dataframe_records": [{"prompt": "ab", "seed": 1}]}`` answers
``{"predictions": ["ab…", …]}``.  The model-from-code entry loads the plugins first, so a task
from a ``RNNLAB_PLUGIN_PATH`` folder is served too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from framework import ROOT
from framework.errors import RnnlabError
from framework.tasks.requests import (  # the request bounds, re-exported for callers
    DEFAULT_LENGTH,
    MAX_LENGTH,
    MAX_PROMPT,
    MAX_REQUEST_CHARS,
    MAX_ROWS,
    MAX_SAMPLES,
)
from framework.training.checkpoint import load_model, resolve_checkpoint

MODEL_CODE = Path(__file__).resolve().parent / "pyfunc_model.py"
CHECKPOINT_ARTIFACT = "checkpoint"


class CharRNNTextModel(PythonModel):
    """pyfunc wrapper: ``load_context`` rebuilds the model, ``predict`` asks its task to answer
    (:meth:`framework.tasks.base.Task.serve`)."""

    def load_context(self, context: Any) -> None:
        self._load(context.artifacts[CHECKPOINT_ARTIFACT])

    def _load(self, checkpoint_path: str | os.PathLike[str]) -> None:
        from framework.registry import SAMPLERS
        from framework.tasks.base import task_from_meta
        from framework.tasks.requests import DEFAULT_LENGTH

        self.model, self.vocab, meta = load_model(resolve_checkpoint(checkpoint_path))
        self.meta = meta
        self.task = task_from_meta(meta.model.task_meta)
        self.window = meta.window
        self.default_length = int(meta.sample_length or DEFAULT_LENGTH)
        sampler_cfg = dict(meta.sampler or {"name": "categorical"})
        # A course-seeded sampler ignores the request's seed (every answer would be the same).
        sampler_cfg.pop("course_seed", None)
        try:
            self.sampler = SAMPLERS.build(sampler_cfg)
        except RnnlabError:
            self.sampler = SAMPLERS.build({"name": "categorical"})

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> list[str]:
        from mlflow.exceptions import MlflowException

        from framework.tasks.requests import as_frame

        try:
            frame = as_frame(model_input, self.task.input_columns[0])
            check_request_size(frame)
            return self.task.serve(self, frame)
        except RnnlabError as exc:
            # A bad request (unknown prompt characters, bad numbers) is a 400, not a crash.
            raise MlflowException.invalid_parameter_value(str(exc)) from None


def _cell_size(value: Any) -> int:
    """Characters of a text cell, values of a list cell, 1 for anything else."""
    if isinstance(value, str):
        return len(value)
    try:
        return len(value)
    except TypeError:
        return 1


def check_request_size(frame: pd.DataFrame) -> None:
    """Refuse (a 400) a request too large to answer, before any work: more than ``MAX_ROWS``
    rows, or more than ``MAX_REQUEST_CHARS`` characters and values in all its cells. The
    model's task then bounds each row (:meth:`Task.serve`)."""
    if len(frame) > MAX_ROWS:
        raise RnnlabError(f"a request may have at most {MAX_ROWS} rows, got {len(frame)}; "
                          f"send it in requests of at most {MAX_ROWS:,} rows")
    total = sum(_cell_size(v) for column in frame.columns for v in frame[column])
    if total > MAX_REQUEST_CHARS:
        raise RnnlabError(f"the request holds {total:,} characters and values, more than "
                          f"{MAX_REQUEST_CHARS:,}; send fewer or shorter rows")


def signature(task: Any) -> Any:
    """The served model's signature: its task's input columns, a string output."""
    return task.signature()


def _requirements() -> list[str]:
    reqs = []
    for name in ("mlflow", "numpy", "pandas", "omegaconf"):
        try:
            reqs.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            reqs.append(name)
    return reqs


@contextlib.contextmanager
def _pins_not_rechecked() -> Iterator[None]:
    """Skip MLflow's check of the requirements against the installed packages while saving.

    The check maps every installed distribution's files to its modules (about 0.5 s of CPU in a
    fresh process, the largest part of saving the model) only to warn when a pin differs from
    the installed version; :func:`_requirements` reads the pins from those installed versions.
    """
    import mlflow.utils.environment as environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None:  # another MLflow: nothing to skip
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Hide a logger's INFO lines ("Validating input example against model signature")."""
    import logging

    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def _code_paths() -> list[str]:
    """framework/ and cells/, the ``code_paths`` of the model: MLflow copies each folder into
    the model once, leaving out ``__pycache__`` (no staging copy first)."""
    return [str(ROOT / name) for name in ("framework", "cells") if (ROOT / name).is_dir()]


def input_example(meta: Any, vocab: Any) -> dict[str, list[Any]]:
    """A small request of the model's task, saved with the model (the UI and
    ``serving_input_example.json`` show it)."""
    from framework.tasks.base import task_from_meta

    return task_from_meta(meta.model.task_meta).input_example(meta, vocab)


def save_pyfunc_model(path: str | os.PathLike[str],
                      checkpoint_path: str | os.PathLike[str], *,
                      mlflow_model: Any = None) -> Path:
    """Save the checkpoint as a pyfunc model directory at ``path`` (must not exist or be empty).

    ``mlflow_model``: the ``mlflow.models.Model`` of a logged model (its id and run), or None.
    """
    import mlflow.pyfunc

    from framework.tasks.base import task_from_meta

    _, vocab, meta = load_model(checkpoint_path)  # refuse a bad checkpoint before saving
    with warnings.catch_warnings(), _pins_not_rechecked(), _quiet("mlflow.pyfunc"):
        # With a signature given, the input example is only checked against it and written
        # down, never run at save time (running it would load the model: slow).
        warnings.filterwarnings("ignore", message=".*Operation with range is deprecated.*")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(MODEL_CODE),
            artifacts={CHECKPOINT_ARTIFACT: str(checkpoint_path)},
            code_paths=_code_paths(),
            signature=task_from_meta(meta.model.task_meta).signature(),
            input_example=pd.DataFrame(input_example(meta, vocab)),  # dataframe_split
            pip_requirements=_requirements(),  # explicit: no slow requirement inference
            metadata={"rnnlab_cell": meta.model.cell_name, "rnnlab_step": meta.step,
                      "rnnlab_task": meta.model.task},
            mlflow_model=mlflow_model,
        )
    return Path(path)


def log_pyfunc_model(client: Any, run_id: str, checkpoint_path: str | os.PathLike[str],
                     name: str = "model", *, experiment_id: str | None = None,
                     params: dict[str, str] | None = None, step: int = 0) -> Any:
    """Log the checkpoint as an MLflow 3 logged model of the run; returns the ``LoggedModel``
    (its URI is ``models:/<model_id>``; ``runs:/<run_id>/<name>`` names it too).

    What ``mlflow.pyfunc.log_model(name=...)`` does, through the explicit client (the fluent
    call reads the process-global tracking URI and active run): create the logged model with
    the run's params, link it to the run as an output, save the model with the logged model's
    id in its ``MLmodel``, upload it to the logged model's artifact location and mark it READY.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    if experiment_id is None:
        experiment_id = client.get_run(run_id).info.experiment_id
    model = client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                       params=params or None)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=step)])
    mlflow_model = Model(artifact_path=model.artifact_location, model_uuid=model.model_id,
                         run_id=run_id, model_id=model.model_id)
    with tempfile.TemporaryDirectory(prefix="rnnlab-model-") as tmp:
        local = save_pyfunc_model(Path(tmp) / "model", checkpoint_path,
                                  mlflow_model=mlflow_model)
        client.log_model_artifacts(model.model_id, str(local))
    return client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)


def load_text_model(checkpoint_path: str | os.PathLike[str]) -> CharRNNTextModel:
    """The pyfunc model class used directly on a checkpoint (no MLflow round trip)."""
    model = CharRNNTextModel()
    model._load(checkpoint_path)
    return model


__all__ = ["DEFAULT_LENGTH", "MAX_LENGTH", "MAX_PROMPT", "MAX_REQUEST_CHARS", "MAX_ROWS",
           "MAX_SAMPLES", "CharRNNTextModel", "check_request_size", "input_example",
           "load_text_model", "log_pyfunc_model", "save_pyfunc_model", "signature"]
