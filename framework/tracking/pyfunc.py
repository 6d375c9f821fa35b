"""A trained checkpoint as an MLflow pyfunc model that generates text.

The model is saved with MLflow's "models from code": ``python_model`` is the path of
``framework/tracking/pyfunc_model.py``, a tiny file that calls ``mlflow.models.set_model(...)``; the
checkpoint ``.npz`` is an artifact.  Nothing is pickled, so loading the model never unpickles
(project rule).  The ``framework/`` package and the ``cells/`` plugin folder are copied into the
model (``code_paths``), so ``mlflow models serve`` works from any directory without installing
rnnlab.

Input: a pandas DataFrame with a ``prompt`` column and optional columns ``num_samples``,
``length``, ``temperature`` and ``seed`` (missing or NaN means "default").  Output: a list of
strings, the samples of row 0, then those of row 1, ...  Each sample starts with its prompt.
Served: ``POST /invocations`` with ``{"dataframe_records": [{"prompt": "ab", "seed": 1}]}`` answers
``{"predictions": ["ab…", …]}``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from framework import ROOT
from framework.errors import RnnlabError
from framework.training.checkpoint import load_model, resolve_checkpoint

MODEL_CODE = Path(__file__).resolve().parent / "pyfunc_model.py"
CHECKPOINT_ARTIFACT = "checkpoint"
# A served model must not be asked for unbounded work: each row is bounded, and so is the whole
# request (rows x samples x (prompt + length) characters); beyond them the answer is a 400.
MAX_LENGTH = 10_000  # per sample
MAX_SAMPLES = 100  # per row
MAX_PROMPT = 10_000  # characters per prompt
MAX_ROWS = 1_000
MAX_REQUEST_CHARS = 1_000_000
DEFAULT_LENGTH = 200


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # pd.isna of a list-like
        return False


def _number(value: Any) -> float | None:
    if _missing(value):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RnnlabError(f"expected a number, got {value!r}") from None
    return None if math.isnan(out) else out


def _int_option(row: dict[str, Any], key: str, default: int | None, lo: int,
                hi: int | None) -> int | None:
    value = _number(row.get(key))
    if value is None:
        return default
    if value != int(value) or value < lo or (hi is not None and value > hi):
        bound = f" and <= {hi}" if hi is not None else ""
        raise RnnlabError(f"{key} must be an integer >= {lo}{bound}, got {row.get(key)!r}")
    return int(value)


class CharRNNTextModel(PythonModel):
    """pyfunc wrapper: ``load_context`` rebuilds the model, ``predict`` generates text."""

    def load_context(self, context: Any) -> None:
        self._load(context.artifacts[CHECKPOINT_ARTIFACT])

    def _load(self, checkpoint_path: str | os.PathLike[str]) -> None:
        from framework.registry import SAMPLERS

        self.model, self.vocab, meta = load_model(resolve_checkpoint(checkpoint_path))
        self.meta = meta
        self.task = meta.model.task
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

        try:
            frame = _as_frame(model_input, "history" if self.task == "forecast" else
                              "text" if self.task == "classify" else "prompt")
            if self.task == "classify":
                return self.classify_rows(frame)
            if self.task == "forecast":
                return self.forecast_rows(frame)
            return self.generate_rows(frame)
        except RnnlabError as exc:
            # A bad request (unknown prompt characters, bad numbers) is a 400, not a crash.
            raise MlflowException.invalid_parameter_value(str(exc)) from None

    def generate_rows(self, frame: pd.DataFrame) -> list[str]:
        from framework.nn.generation import generate
        from framework.registry import SAMPLERS

        if len(frame) > MAX_ROWS:
            raise RnnlabError(f"a request may have at most {MAX_ROWS} rows, got {len(frame)}")
        # Every row is checked, and the whole request's work bounded, before anything runs.
        requests = []
        for row in frame.to_dict(orient="records"):
            prompt = row.get("prompt")
            prompt = "" if _missing(prompt) else str(prompt)
            if len(prompt) > MAX_PROMPT:
                raise RnnlabError(f"prompt has {len(prompt):,} characters, more than "
                                  f"{MAX_PROMPT:,}")
            num = _int_option(row, "num_samples", 1, 1, MAX_SAMPLES)
            length = _int_option(row, "length", min(self.default_length, MAX_LENGTH), 0,
                                 MAX_LENGTH)
            seed = _int_option(row, "seed", None, 0, 2**63 - 1)
            temperature = _number(row.get("temperature"))
            sampler = self.sampler
            if temperature is not None:
                sampler = SAMPLERS.build({"name": "temperature", "temperature": temperature})
            requests.append((prompt, num, length, seed, sampler))
        work = sum(num * (len(prompt) + length) for prompt, num, length, _, _ in requests)
        if work > MAX_REQUEST_CHARS:
            raise RnnlabError(f"the request asks for {work:,} characters (rows x num_samples x "
                              f"(prompt + length)), more than {MAX_REQUEST_CHARS:,}; send "
                              f"fewer rows or samples, or shorter ones")
        texts: list[str] = []
        for prompt, num, length, seed, sampler in requests:
            texts += generate(self.model, self.vocab, sampler, prompt=prompt, length=length,
                              num_samples=num, window=self.window,
                              rng=np.random.default_rng(seed))
        return texts


    def classify_rows(self, frame: pd.DataFrame) -> list[str]:
        """``"class p, class p, ..."`` (the top ``task.top_k`` classes) for each ``text``."""
        from framework.tasks.classify import predict_top_k

        if "text" not in frame.columns:
            raise RnnlabError("a classifier's input needs a 'text' column")
        texts = ["" if _missing(t) else str(t) for t in frame["text"]]
        if len(texts) > MAX_SAMPLES * 100 or any(len(t) > MAX_LENGTH for t in texts):
            raise RnnlabError(f"at most {MAX_SAMPLES * 100} texts of at most {MAX_LENGTH} "
                              f"characters per request")
        top_k = int(self.meta.model.task_meta["options"].get("top_k", 3))
        rows = predict_top_k(self.model, self.meta.model.task_meta, texts, top_k,
                             vocab=self.vocab)
        return [", ".join(f"{name} {p:.4f}" for name, p in top) for top in rows]

    def forecast_rows(self, frame: pd.DataFrame) -> list[str]:
        """The next ``task.horizon`` values (space-separated) after each row's ``history``."""
        from framework.tasks.forecast import forecast_values

        if "history" not in frame.columns:
            raise RnnlabError("a forecaster's input needs a 'history' column (past values)")
        out = []
        for history in frame["history"]:
            if isinstance(history, str):
                history = [v for v in history.replace(",", " ").split() if v]
            if history is None or len(history) > MAX_LENGTH:
                raise RnnlabError(f"history must list at most {MAX_LENGTH} past values")
            try:
                nxt = forecast_values(self.model, self.meta.model.task_meta, list(history))
            except RnnlabError:
                raise
            out.append(" ".join(f"{v:.6g}" for v in nxt[:, 0]))
        return out


def _as_frame(model_input: Any, column: str = "prompt") -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, str):
        return pd.DataFrame({column: [model_input]})
    if isinstance(model_input, dict):
        return pd.DataFrame([model_input])
    if isinstance(model_input, (list, tuple)):
        if all(isinstance(x, str) for x in model_input):
            return pd.DataFrame({column: list(model_input)})
        return pd.DataFrame(list(model_input))
    raise RnnlabError(f"model input must be a DataFrame with a '{column}' column, got "
                      f"{type(model_input).__name__}")


def signature(task: str = "lm") -> Any:
    """Input columns (for the language model all but ``prompt`` optional; a classifier's
    ``text``; a forecaster's ``history``) and a string output."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    if task == "classify":
        return ModelSignature(inputs=Schema([ColSpec("string", "text")]),
                              outputs=Schema([ColSpec("string")]))
    if task == "forecast":
        return ModelSignature(inputs=Schema([ColSpec(AnyType(), "history")]),
                              outputs=Schema([ColSpec("string")]))

    # Numbers are typed "any" (checked in predict): MLflow refuses int64 for a "double" column,
    # and a "long" column turns float64 as soon as one record omits it (NaN).
    inputs = Schema([
        ColSpec("string", "prompt"),
        *(ColSpec(AnyType(), name, required=False)
          for name in ("num_samples", "length", "temperature", "seed")),
    ])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("string")]))


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


def _stage_code(dst: Path) -> list[str]:
    """Copies of framework/ and cells/ without caches, for ``code_paths``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    paths = []
    for name in ("framework", "cells"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
            paths.append(str(dst / name))
    return paths


def input_example(meta: Any, vocab: Any) -> dict[str, list[Any]]:
    """A small request of the model's task, saved with the model (the UI and
    ``serving_input_example.json`` show it): a prompt of the vocabulary's first letters, a text
    of them, or as many past values as a forecast needs, at the scaler's mean."""
    task = meta.model.task
    letters = "".join(c for c in getattr(vocab, "chars", ()) if len(c) == 1 and c.isalpha())[:2]
    if task == "classify":
        return {"text": [letters or "a"]}
    if task == "forecast":
        task_meta = meta.model.task_meta
        mean = float(task_meta["mean"][0])
        # A differenced model needs `difference` more values than its window.
        length = int(task_meta["window"]) + int(task_meta.get("difference", 0))
        return {"history": [" ".join(f"{mean:.6g}" for _ in range(length))]}
    return {"prompt": [letters], "num_samples": [1], "length": [20], "seed": [0]}


def save_pyfunc_model(path: str | os.PathLike[str],
                      checkpoint_path: str | os.PathLike[str], *,
                      mlflow_model: Any = None) -> Path:
    """Save the checkpoint as a pyfunc model directory at ``path`` (must not exist or be empty).

    ``mlflow_model``: the ``mlflow.models.Model`` of a logged model (its id and run), or None.
    """
    import mlflow.pyfunc

    _, vocab, meta = load_model(checkpoint_path)  # refuse a bad checkpoint before saving
    with tempfile.TemporaryDirectory(prefix="rnnlab-code-") as staging, \
            warnings.catch_warnings(), _pins_not_rechecked(), _quiet("mlflow.pyfunc"):
        # With a signature given, the input example is only checked against it and written
        # down, never run at save time (running it would load the model: slow).
        warnings.filterwarnings("ignore", message=".*Operation with range is deprecated.*")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(MODEL_CODE),
            artifacts={CHECKPOINT_ARTIFACT: str(checkpoint_path)},
            code_paths=_stage_code(Path(staging)),
            signature=signature(meta.model.task),
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


__all__ = ["CharRNNTextModel", "input_example", "load_text_model", "log_pyfunc_model",
           "save_pyfunc_model", "signature"]
