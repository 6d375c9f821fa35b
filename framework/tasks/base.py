"""The task plugin contract: what differs between next-token modelling, classification and
forecasting, so that the trainer, checkpoints and commands are written once for all of them.

A task is registered in ``TASKS`` with its schema (``task.<key>=`` options) and owns:

* which corpora it accepts (``corpus_kinds``) and the combinations it refuses (:meth:`check`);
* the model on top of the cell stack (:meth:`build_model`) and the feed (:meth:`make_feed`);
* the loss and gradients of one batch (:meth:`loss_and_grads`);
* evaluation metrics (:meth:`evaluate`); the ones it reports at every eval that a sweep may
  optimise, each with its natural direction (``objectives``; :meth:`objective_direction` also
  takes their ``best_`` variants, the best eval so far);
* what "sample" means during training (:meth:`sample_lines`) and the final artifacts;
* what it stores in a checkpoint beyond the parameters (:meth:`meta`).

Cells never know which task they serve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from framework.errors import ConfigError

BEST_PREFIX = "best_"  # best_<metric>: the best value of <metric> over the evals so far


class Task:
    """Base of every task plugin; the registry sets ``name`` and passes the validated schema."""

    name: ClassVar[str] = "task"
    corpus_kinds: ClassVar[tuple[str, ...]] = ()
    bidirectional: ClassVar[bool] = False  # may the model read each sequence in both directions?
    unit: ClassVar[str] = "tokens"  # what the throughput counts
    # Final metrics `framework.compare` shows; runs are ranked by the first.
    compare_metrics: ClassVar[tuple[str, ...]] = ("val_loss",)
    # Metrics reported at every eval that a sweep may optimise, and which way each is better
    # ("minimize" or "maximize").
    objectives: ClassVar[Mapping[str, str]] = {"val_loss": "minimize"}

    def __init__(self, config: Any = None) -> None:
        self.config = config

    # -- set-up ----------------------------------------------------------------------------
    @property
    def objective(self) -> str:
        """The metric a sweep optimises (returned by the training command)."""
        return getattr(self.config, "objective", None) or "val_loss"

    @property
    def direction(self) -> str:
        """Which way the sweep objective is better: ``minimize`` or ``maximize``."""
        return self.objective_direction(self.objective)

    @classmethod
    def objective_direction(cls, name: str) -> str:
        """The natural direction of ``name``: one of ``objectives`` or ``best_<one of them>``
        (the best eval so far); any other name is a one-line ConfigError listing the choices."""
        metric = name[len(BEST_PREFIX):] if name.startswith(BEST_PREFIX) else name
        if metric not in cls.objectives:
            choices = [*cls.objectives, *(BEST_PREFIX + m for m in cls.objectives)]
            raise ConfigError(f"{name!r} is not a metric task '{cls.name}' reports at every "
                              f"eval; choose one of {', '.join(choices)}")
        return cls.objectives[metric]

    def check(self, rc: Any, corpus: Any) -> None:
        """Refuse a config/dataset combination this task cannot train, in one line."""
        if corpus.kind not in self.corpus_kinds:
            fits = {"lines": "lm", "stream": "lm", "labelled": "classify", "series": "forecast"}
            hint = fits.get(corpus.kind)
            fix = f"use task={hint}" if hint else "choose another dataset"
            raise ConfigError(
                f"task '{self.name}' needs a dataset of kind {' or '.join(self.corpus_kinds)}, "
                f"but '{corpus.name}' is {corpus.kind}; {fix}")
        if rc.model.bidirectional and not self.bidirectional:
            raise ConfigError(
                f"model.bidirectional=true does not fit task '{self.name}': its predictions must "
                f"not read the future; set model.bidirectional=false or use task=classify")

    def initial_loss(self, rc: Any, corpus: Any) -> float:
        """Where the smoothed training loss starts: the loss of a uniform guess."""
        return math.nan

    def build_model(self, rc: Any, corpus: Any) -> Any:
        raise NotImplementedError

    def make_feed(self, rc: Any, corpus: Any) -> Any:
        raise NotImplementedError

    # -- training --------------------------------------------------------------------------
    def zero_state(self, model: Any, feed: Any, rc: Any) -> Any:
        """The state carried between batches (only the language model carries one)."""
        return None

    def loss_and_grads(self, model: Any, batch: Any, state: Any, *, rc: Any,
                       dropout_rng: Any) -> tuple[float, float, dict, Any]:
        """``(loss summed over the batch, its count, gradients, state after the batch)``; the
        gradients are those of the mean loss when ``train.loss=mean``."""
        raise NotImplementedError

    def evaluate(self, model: Any, feed: Any, rc: Any) -> dict[str, float]:
        """Validation metrics, ``val_loss`` among them (empty when there is no validation set)."""
        raise NotImplementedError

    def start_metrics(self, corpus: Any, rc: Any) -> dict[str, float]:
        """Metrics logged once before training (baselines on the same split)."""
        return {}

    def sample_lines(self, trainer: Any, step: int) -> tuple[str, list[str], list[str]]:
        """``(header, sample texts, console lines)`` shown every ``train.sample_every`` steps."""
        return "", [], []

    def final_artifacts(self, trainer: Any, out_dir: Path) -> list[Path]:
        """Files written at the end of training for MLflow (plots, tables)."""
        return []

    def throughput_unit(self, vocab: Any = None) -> str:
        """What the run's throughput counts, for the end-of-run line."""
        return self.unit

    def summary(self, metrics: dict[str, float], vocab: Any = None) -> str:
        """The end-of-run line's description of the final validation metrics."""
        loss = metrics.get("val_loss", math.nan)
        return f"val loss {loss:.4f}"

    def meta(self, corpus: Any) -> dict[str, Any]:
        """What a checkpoint needs beyond parameters to rebuild and use the model."""
        return {}


__all__ = ["BEST_PREFIX", "Task"]
