"""The ``forecast`` task: ``task.window`` past values of a real-valued series predict the next
``task.horizon`` values through a linear head on the last hidden state.

The model sees values standardised with the training part's mean and standard deviation; every
reported error is in the series' original units.  Metrics per evaluation: ``val_loss`` (mean
squared error of the standardised values), ``val_rmse`` and ``val_mae`` one step ahead with the
true history, and ``val_recursive_rmse`` of a forecast that feeds its own predictions back over
the whole validation span.  Persistence and a least-squares AR(``task.window``) on the same split
are logged before training (``baseline_persistence_rmse``, ``baseline_ar_rmse``).

``task.difference=1`` (or 2) trains the model on the series' differences instead of its levels
(:mod:`framework.data.corpora.differencing`); its outputs are turned back into levels, anchored on
the true last values, before ``val_rmse``, ``val_mae`` and ``val_recursive_rmse`` are computed, so
they and the baselines (always on the undifferenced series) stay comparable.  ``val_loss`` stays
the model's own loss, of standardised differences then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framework.data.corpora.differencing import MAX_DIFFERENCE
from framework.data.corpora.series import MAX_MAGNITUDE, too_large
from framework.errors import ConfigError, RnnlabError
from framework.memory import check_buffers, forward_bytes
from framework.registry import TASKS
from framework.tasks import requests
from framework.tasks.base import MAX_WINDOW, Task, spec_options

MAX_FEATURES = 1 << 12  # what a checkpoint may claim
# What a sweep may optimise (reported at every eval), and which way each is better.
OBJECTIVES = {"val_loss": "minimize", "val_rmse": "minimize", "val_mae": "minimize",
              "val_recursive_rmse": "minimize"}


@dataclass
class ForecastConfig:
    name: str = "forecast"
    window: int = 9              # past values per prediction (also the AR baseline's order)
    horizon: int = 1             # values predicted at once
    objective: str = "val_rmse"  # what a sweep optimises
    recursive: bool = True       # also forecast the whole validation span recursively
    difference: int = 0          # model the series' differences of this order (0: the levels)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                             f"got {self.objective!r}")
        if not 0 <= self.difference <= MAX_DIFFERENCE:
            raise ValueError(f"difference must be in [0, {MAX_DIFFERENCE}], got "
                             f"{self.difference}")


def build_forecaster(rc: Any, input_size: int, horizon: int) -> Any:
    from framework.nn.models.many_to_one import SequenceForecaster

    options = rc.options("cell")
    hidden_size, init = options.pop("hidden_size"), options.pop("init")
    return SequenceForecaster(rc.cell.name, input_size, horizon, hidden_size,
                              rc.model.num_layers, rc.model.dropout, init, rc.dtype, ids=False,
                              cell_options=options)


def forecast_next(model: Any, history: np.ndarray) -> np.ndarray:
    """The model's next ``horizon`` values (horizon, D) after a standardised (W, D) history."""
    x = np.asarray(history, dtype=model.dtype)[:, None, :]
    return model.predict(x)[0]


def check_history(value: Any, window: int, difference: int = 0) -> np.ndarray:
    """A prediction request's past values as (window + difference, 1) float64, oldest first: a
    list of at least that many finite numbers (the last that many are used), else one line."""
    items = (list(value) if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str)
             else [value])
    # JSON's and YAML's true/false are not numbers, although float() reads them as 1 and 0.
    if any(isinstance(v, bool | np.bool_) for v in items):
        raise ConfigError(f"history must be a list of numbers, got {value!r} (true and false "
                          f"are not numbers)")
    try:
        values = np.array([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"history must be a list of numbers, got {value!r}") from None
    if not np.isfinite(values).all():
        raise ConfigError("history values must be finite numbers (no NaN or infinity)")
    largest = too_large(values)
    if largest is not None:
        raise ConfigError(f"history has a value as large as {largest:.3g}, beyond the "
                          f"{MAX_MAGNITUDE:.0e} a series model takes; pass values in the units "
                          f"the model was trained on")
    needed = window + difference
    if len(values) < needed:
        reads = f"task.window={window}" + (f" plus task.difference={difference}" if difference
                                           else "")
        raise ConfigError(f"history has {len(values)} values; this model reads {reads}: pass at "
                          f"least {needed}, oldest first")
    return values[-needed:, None]


def forecast_values(model: Any, task_meta: dict[str, Any], history: Any,
                    dataset: dict[str, Any] | None = None) -> np.ndarray:
    """The next ``horizon`` values (horizon, D) in original units after ``history`` (past values,
    oldest first), or, when it is None, after the end of ``dataset`` (the training config's
    dataset section); ``task_meta`` is a checkpoint's validated task metadata."""
    from framework.data.corpora.differencing import difference, integrate

    mean, std = np.asarray(task_meta["mean"]), np.asarray(task_meta["std"])
    window, order = int(task_meta["window"]), int(task_meta.get("difference", 0))
    if history is None:
        from framework.plugins import load_plugins
        from framework.registry import DATASETS

        load_plugins()
        corpus = DATASETS.build(dataset or {}).load()
        values = corpus.values[-(window + order):]
    else:
        values = check_history(history, window, order)
    past = difference(values, order)[order:]
    check_buffers("forecasting", forward_bytes(model, 1, len(past)),
                  f"a window of {len(past):,} values through the model",
                  "use a model with a smaller task.window or cell.hidden_size")
    scaled = (past - mean) / std
    return integrate(values, forecast_next(model, scaled) * std + mean, order)


@TASKS.register("forecast", schema=ForecastConfig)
class ForecastTask(Task):
    """Next values of a series from a window of past values."""

    name = "forecast"
    corpus_kinds = ("series",)
    unit = "values"
    compare_metrics = ("val_rmse", "val_mae", "val_recursive_rmse", "baseline_persistence_rmse",
                       "baseline_ar_rmse")
    objectives = OBJECTIVES
    noun = "forecaster"
    key_params = ("cell.name", "cell.hidden_size", "model.num_layers", "dataset.name",
                  "task.window", "task.horizon", "optimizer.lr", "train.steps", "seed")
    input_columns = ("history",)
    predict_input = "history"
    predict_input_required = False  # no history: after the end of the training data
    has_vocab = False
    head_reads_every_step = False  # the next values after the window's last state
    memory_knobs = ("task.window",)
    meta_fields = ("mean", "std", "columns", "window", "horizon", "difference")

    def initial_loss(self, rc: Any, corpus: Any) -> float:
        return 1.0  # predicting the training mean: unit variance after standardising

    def build_model(self, rc: Any, corpus: Any) -> Any:
        return build_forecaster(rc, corpus.dim, self.config.horizon)

    def memory_batch(self, rc: Any, corpus: Any, feed_kind: str) -> tuple[int, int]:
        return rc.train.batch_size, self.config.window

    def make_feed(self, rc: Any, corpus: Any) -> Any:
        from framework.registry import FEEDS

        return FEEDS.build({"name": "series"}, corpus=corpus, window=self.config.window,
                           horizon=self.config.horizon, batch_size=rc.train.batch_size,
                           seed=rc.seed, dtype=rc.dtype, difference=self.config.difference)

    def loss_and_grads(self, model: Any, batch: Any, state: Any, *, rc: Any,
                       dropout_rng: Any) -> tuple[float, float, dict, Any]:
        reduction = "mean" if rc.train.loss == "mean" else "sum"
        out = model.loss_and_grads(batch.inputs, None, batch.targets, reduction=reduction,
                                   dropout_rng=dropout_rng)
        return out.total, out.count, out.grads, None

    def one_step(self, model: Any, feed: Any, rc: Any) -> tuple[np.ndarray, np.ndarray]:
        """Standardised (predictions, mask) of every validation window: (N_val, horizon, D)."""
        preds, masks = [], []
        for index, batch in enumerate(feed.val_batches()):
            if rc.train.eval_batches and index >= rc.train.eval_batches:
                break
            preds.append(model.predict(batch.inputs))
            masks.append(batch.mask)
        if not preds:
            return np.zeros((0, 1, 1)), np.zeros((0, 1), bool)
        return np.concatenate(preds), np.concatenate(masks)

    def recursive(self, model: Any, feed: Any) -> np.ndarray:
        """A forecast of the whole validation span from the training part's last window, each
        prediction fed back as history; original units, (N_val, D)."""
        from framework.data.feeds.series import recursive_forecast

        scaled = recursive_forecast(lambda h: forecast_next(model, h), feed.history(),
                                    feed.corpus.n_val)
        return feed.values_after(feed.unscale(scaled))

    def evaluate(self, model: Any, feed: Any, rc: Any) -> dict[str, float]:
        from framework.tasks.metrics import mae, rmse

        corpus = feed.corpus
        preds, mask = self.one_step(model, feed, rc)
        if not len(preds):
            return {}
        starts = feed.val_starts()[: len(preds)]
        ahead = np.minimum(starts[:, None] + np.arange(preds.shape[1])[None, :], feed.n - 1)
        truth_scaled = feed.scaled[ahead]
        err = (preds - truth_scaled)[mask]
        metrics = {"val_loss": float(np.mean(np.square(err, dtype=np.float64)))}
        # One step ahead with the true history (differences added to the true last values).
        first = feed.one_step_values(feed.unscale(preds[:, 0, :]), starts)
        truth = corpus.values[starts]
        metrics["val_rmse"] = rmse(truth, first)
        metrics["val_mae"] = mae(truth, first)
        if self.config.recursive and not rc.train.eval_batches:
            metrics["val_recursive_rmse"] = rmse(corpus.val, self.recursive(model, feed))
        return metrics

    def start_metrics(self, corpus: Any, rc: Any) -> dict[str, float]:
        from framework.tasks.baselines import forecast_baselines

        return forecast_baselines(corpus, self.config.window) if corpus.n_val else {}

    def sample_lines(self, trainer: Any, step: int) -> tuple[str, list[str], list[str]]:
        feed = trainer.feed
        nxt = feed.values_after(feed.unscale(forecast_next(trainer.model, feed.history())))
        values = ", ".join(f"{v:.4g}" for v in nxt[:, 0])
        header = f"step {step}: smoothed loss {trainer.smooth_loss:.4f}"
        line = f"next {len(nxt)} after the training part: {values}"
        return header, [line], [f"--- forecast at {header}", f"  {line}"]

    def final_artifacts(self, trainer: Any, out_dir: Path) -> list[Path]:
        from framework.tasks.baselines import ar_one_step
        from framework.tasks.metrics import save_forecast_png

        corpus, feed = trainer.corpus, trainer.feed
        if not corpus.n_val:
            return []
        preds, _ = self.one_step(trainer.model, feed, trainer.rc)
        starts = feed.val_starts()[: len(preds)]
        curves = {"one-step": feed.one_step_values(feed.unscale(preds[:, 0, :]), starts)}
        if self.config.recursive:
            curves["recursive"] = self.recursive(trainer.model, feed)
        window = self.config.window
        ar = ar_one_step(corpus, window, warn=False)  # None: too large (warned at the start)
        if ar is not None:
            curves[f"AR({window})"] = ar
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / "forecast.png"
        save_forecast_png(corpus.times, corpus.values, corpus.n_train, curves, png,
                          history=4 * corpus.n_val, ylabel=corpus.columns[0],
                          title=f"{corpus.name}: validation forecasts")
        return [png]

    def summary(self, metrics: dict[str, float], vocab: Any = None) -> str:
        return (f"val RMSE {metrics.get('val_rmse', math.nan):.4f}, MAE "
                f"{metrics.get('val_mae', math.nan):.4f}, recursive RMSE "
                f"{metrics.get('val_recursive_rmse', math.nan):.4f} (original units)")

    def meta(self, corpus: Any) -> dict[str, Any]:
        from framework.data.corpora.differencing import scaling

        # The statistics the model's inputs were standardised with (of the differences when
        # task.difference > 0): what a prediction from raw past values needs.
        mean, std = scaling(corpus, self.config.difference)
        return {"mean": np.asarray(mean).reshape(-1).tolist(),
                "std": np.asarray(std).reshape(-1).tolist(),
                "columns": list(corpus.columns), "window": self.config.window,
                "horizon": self.config.horizon, "difference": self.config.difference}

    def describe_data(self, rc: Any, corpus: Any = None) -> str:
        return f"{rc.dataset.name} (window {self.config.window}, horizon {self.config.horizon})"

    # -- checkpoints -----------------------------------------------------------------------
    @classmethod
    def read_meta(cls, fields: Any, raw: Any, options: Any) -> dict[str, Any]:
        f, m = fields, raw
        for key in ("mean", "std"):
            values = m.get(key)
            if (not isinstance(values, list) or not 1 <= len(values) <= MAX_FEATURES or not all(
                    type(v) in (int, float) and math.isfinite(v) for v in values)):
                raise f.fail(f"task.{key}", f"a list of 1 to {MAX_FEATURES} finite numbers",
                             values)
        if len(m["std"]) != len(m["mean"]) or not all(v > 0 for v in m["std"]):
            raise f.fail("task.std", "positive numbers, one per feature", m["std"])
        columns = m.get("columns") or [f"x{i}" for i in range(len(m["mean"]))]
        if not isinstance(columns, list) or len(columns) != len(m["mean"]):
            raise f.fail("task.columns", "one name per feature", columns)
        out = dict(mean=[float(v) for v in m["mean"]], std=[float(v) for v in m["std"]],
                   columns=[str(c) for c in columns],
                   window=f.integer(m.get("window"), "task.window", 1, MAX_WINDOW),
                   horizon=f.integer(m.get("horizon"), "task.horizon", 1, MAX_WINDOW),
                   # checkpoints written before task.difference existed model the levels
                   difference=f.integer(m.get("difference", 0), "task.difference", 0,
                                        MAX_DIFFERENCE))
        if options.get("difference", out["difference"]) != out["difference"]:
            raise f.fail("task.difference", f"the task options' difference "
                         f"({options.get('difference')!r})", out["difference"])
        return out

    @classmethod
    def model_from_meta(cls, spec: Any, vocab: Any) -> Any:
        from framework.nn.models.many_to_one import SequenceForecaster

        task = spec.task_meta
        return SequenceForecaster(spec.cell, len(task["mean"]), task["horizon"],
                                  **spec_options(spec), bidirectional=task["bidirectional"])

    # -- using a trained model -------------------------------------------------------------
    def predict(self, model: Any, vocab: Any, meta: Any, cfg: Any) -> list[str]:
        """The next ``task.horizon`` values after ``history`` (or after the end of the
        training data), labelled: ``next 2 values: 62.8788 66.7633`` (one line; a series of
        several features gets one line per step ahead, ``t+1: ...``)."""
        nxt = forecast_values(model, meta.model.task_meta, cfg.get("history"),
                              meta.config.get("dataset"))
        if nxt.shape[1] == 1:
            what = "next value" if len(nxt) == 1 else f"next {len(nxt)} values"
            return [f"{what}: " + " ".join(f"{v:.6g}" for v in nxt[:, 0])]
        return [f"t+{k}: " + " ".join(f"{v:.6g}" for v in row) for k, row in enumerate(nxt, 1)]

    def signature(self) -> Any:
        """``history`` (a list or a space- or comma-separated string) in, the next values out as
        a list of numbers per row."""
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import AnyType, Array, ColSpec, Schema

        return ModelSignature(inputs=Schema([ColSpec(AnyType(), "history")]),
                              outputs=Schema([ColSpec(Array("double"))]))

    def input_example(self, meta: Any, vocab: Any) -> dict[str, list[Any]]:
        """As many past values as a forecast needs, at the scaler's mean."""
        task_meta = meta.model.task_meta
        mean = float(task_meta["mean"][0])
        # A differenced model needs `difference` more values than its window.
        length = int(task_meta["window"]) + int(task_meta.get("difference", 0))
        return {"history": [" ".join(f"{mean:.6g}" for _ in range(length))]}

    def serve(self, served: Any, frame: Any) -> list[list[float]]:
        """The next ``task.horizon`` values after each row's ``history``, as numbers."""
        if "history" not in frame.columns:
            raise RnnlabError("a forecaster's input needs a 'history' column (past values)")
        out = []
        for history in frame["history"]:
            if isinstance(history, str):
                history = [v for v in history.replace(",", " ").split() if v]
            if history is None or len(history) > requests.MAX_LENGTH:
                raise RnnlabError(f"history must list at most {requests.MAX_LENGTH} past values")
            nxt = forecast_values(served.model, served.meta.model.task_meta, list(history))
            out.append([float(v) for v in nxt[:, 0]])
        return out


__all__ = ["MAX_FEATURES", "OBJECTIVES", "ForecastConfig", "ForecastTask", "build_forecaster",
           "check_history", "forecast_next", "forecast_values"]
