"""Vanishing-gradient study: ||dL_T/dh_t|| against the distance T - t, for rnn, lstm and gru.

L_T is the cross-entropy of the *last* step's prediction only. Its gradient w.r.t. an earlier
hidden state h_t is what BPTT carries back over T - t steps, so how fast its norm decays is what
limits how far back a cell can learn dependencies.

The measurement uses the cells' own forward/backward (no second copy of any formula). The cell API
returns the gradient w.r.t. the *initial* state (``dstate0``) but not the per-step dh, so
dL_T/dh_t is read as the ``dstate0`` of the truncated sub-sequence that starts right after step t
from the true state h_t (and c_t for the LSTM), with the output gradient fed in as ``dstateT``.
For the LSTM the reported quantity is the h part (c_t is held fixed), the usual BPTT dh.
That is O(T^2) cell steps, which is nothing for T ~ 100.

Entry point (documented in experiments/README.md)::

    python -m framework.vanishing [hydra overrides ...]

composes ``experiment=vanishing_gradients`` once per cell, measures at initialisation, trains
``train.steps`` steps with the ordinary Trainer, measures again, and writes one PNG (saved in the
current directory and logged to MLflow with the norms as metrics, step = distance).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import ConfigError, RnnlabError, print_error
from framework.nn.models.language_model import CharRNN

CELL_NAMES = ("rnn", "lstm", "gru")


def _last_step_grad(model: CharRNN, h_last: np.ndarray, target: np.ndarray) -> np.ndarray:
    """dL_T/dh_T of the softmax cross-entropy of the last step (rows = batch elements)."""
    logits = h_last @ model.params["out.W"] + model.params["out.b"]
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(target)), target] -= 1.0
    return probs @ model.params["out.W"].T


def dh_norms(model: CharRNN, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean over the batch of ||dL_T/dh_t||, indexed by distance d = T - t (d = 0 .. T-1).

    ``inputs``/``targets`` are (T, B) ids; L_T scores ``targets[-1]`` only. One-layer models.
    """
    if model.num_layers != 1:
        raise ConfigError("the vanishing-gradient study measures one-layer models; "
                          "set model.num_layers=1")
    cell, params = model.cell, model._layer_params(0)
    T, B = inputs.shape
    # states[t] = the state after input t, as own copies (forward returns views of its cache).
    states, state = [], model.zero_state(B)[0]
    for t in range(T):
        _, state, _ = cell.forward(params, inputs[t : t + 1], state, layer_input_is_ids=True)
        state = tuple(np.array(s) for s in state)
        states.append(state)
    g = _last_step_grad(model, states[-1][0], targets[-1])
    norms = np.empty(T)
    norms[0] = np.linalg.norm(g, axis=1).mean()
    for d in range(1, T):
        t = T - 1 - d
        _, _, cache = cell.forward(params, inputs[t + 1 :], states[t], layer_input_is_ids=True)
        dstateT = (g,) + tuple(np.zeros_like(s) for s in states[t][1:])
        _, _, dstate0 = cell.backward(params, None, dstateT, cache)
        norms[d] = np.linalg.norm(dstate0[0], axis=1).mean()
    return norms


def probe_batch(stream: np.ndarray, length: int, batch: int, seed: int) -> tuple[np.ndarray, ...]:
    """``batch`` random windows of ``length`` inputs (and next-char targets) from an id stream."""
    if len(stream) <= length + 1:
        raise ConfigError(f"the validation text ({len(stream)} chars) is too short for probe "
                          f"windows of {length}; lower the probe length")
    starts = np.random.default_rng(seed).integers(0, len(stream) - length - 1, size=batch)
    idx = starts[None, :] + np.arange(length)[:, None]
    return stream[idx], stream[idx + 1]


def figure(curves: dict[str, dict[str, np.ndarray]], title: str) -> Any:
    """One panel per phase (init / trained), one log-scale line per cell."""
    from framework.figures import agg_figure

    fig = agg_figure(10, 4)
    phases = ("init", "trained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, phase in zip(axes, phases, strict=True):
        for cell, by_phase in curves.items():
            values = by_phase[phase]
            ax.semilogy(np.arange(len(values)), values, label=cell, linewidth=1.6)
        ax.set_title(f"{'at initialisation' if phase == 'init' else 'after training'}")
        ax.set_xlabel("distance T - t (steps)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("mean ||dL_T / dh_t||")
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _probe_sizes(cfg: Any) -> tuple[int, int]:
    """``probe.length`` (>= 2) and ``probe.batch`` (>= 1), checked like every config value."""
    out = []
    for key, low in (("length", 2), ("batch", 1)):
        value = cfg.probe.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"probe.{key} must be an integer >= {low}, got {value!r}")
        out.append(value)
    return out[0], out[1]


def _study(overrides: list[str]) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from framework.cli.overrides import (
        CONF,
        hydra_error_message,
        precheck_overrides,
        quote_free_text,
        store_plugin_configs,
    )
    from framework.data.feeds.text import as_stream
    from framework.tracking.params import flatten_config
    from framework.tracking.protocol import NullTracker
    from framework.tracking.run_info import run_params
    from framework.tracking.tracker import MlflowTracker
    from framework.training.config import validate
    from framework.training.trainer import Reporter, Trainer, print_line

    precheck_overrides(overrides)
    overrides = quote_free_text(overrides)
    store_plugin_configs()
    curves: dict[str, dict[str, np.ndarray]] = {}
    losses: dict[str, float] = {}
    rc = None
    for cell in CELL_NAMES:
        try:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                cfg = compose("config",
                              ["experiment=vanishing_gradients", *overrides, f"cell={cell}"])
        except (HydraException, OmegaConfBaseException) as exc:
            raise ConfigError(hydra_error_message(exc)) from None
        rc = validate(cfg)
        length, n_probe = _probe_sizes(cfg)
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer(rc, out_dir=Path(out), reporter=Reporter(NullTracker(), print_line))
            inputs, targets = probe_batch(as_stream(trainer.corpus, "val"), length, n_probe,
                                          rc.seed)
            init = dh_norms(trainer.model, inputs, targets)
            result = trainer.run()
        curves[cell] = {"init": init, "trained": dh_norms(trainer.model, inputs, targets)}
        losses[cell] = result.final_val_loss
        print_line(f"{cell}: val loss {result.final_val_loss:.4f} nats/char after "
                   f"{result.steps} steps; ||dL_T/dh_t|| at distance 0/10/50: "
                   + ", ".join(f"{p} " + "/".join(f"{curves[cell][p][d]:.3g}"
                                                  for d in (0, 10, min(50, length - 1)))
                               for p in ("init", "trained")))
    assert rc is not None
    title = (f"{rc.dataset.name}, hidden {rc.cell.hidden_size}, {rc.train.steps} steps "
             f"({rc.optimizer.name}, lr {rc.optimizer.lr})")
    fig = figure(curves, title)
    # A run folder like the training command's (outputs/<date>/<time>-vanishing), not the
    # launch directory: nothing but the documented stores lands there.
    out = Path("outputs") / time.strftime("%Y-%m-%d") / (time.strftime("%H-%M-%S") + "-vanishing")
    out.mkdir(parents=True, exist_ok=True)
    png = (out / "vanishing_gradients.png").resolve()
    fig.savefig(png)
    tracker = MlflowTracker.from_config(rc.mlflow)
    tracker.check_reachable()
    tracker.start(params=flatten_config({**run_params(rc), "cells": ",".join(CELL_NAMES)}),
                  tags={"analysis": "vanishing_gradients"})
    try:
        for cell, by_phase in curves.items():
            for phase, values in by_phase.items():
                for d, value in enumerate(values):
                    tracker.log_metrics({f"dh_norm_{phase}_{cell}": float(value)}, d)
            tracker.log_metrics({f"val_loss_{cell}": losses[cell]}, rc.train.steps)
        tracker.log_figure(fig, "vanishing_gradients.png")
    finally:
        tracker.end("FINISHED")
    print_line(f"wrote {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.split("Entry point")[0].rstrip() + "\n\nUsage: python -m framework.vanishing"
              " [hydra overrides ...]  (e.g. train.steps=200 cell.hidden_size=64)")
        return 0
    try:
        return _study(argv)
    except RnnlabError as exc:
        print_error(exc)
        return exc.exit_code



__all__ = ["dh_norms", "figure", "main", "probe_batch"]
