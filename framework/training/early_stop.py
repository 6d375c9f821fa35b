"""The best evaluation so far: its value, step and metrics, its parameters and the early stop.

One owner for "best": the trainer asks :meth:`BestEval.observe` after every eval whether the
objective improved (``best.npz`` is written then), and with ``train.early_stop.patience`` > 0 it
also keeps a copy of the parameters at each improvement and says when to stop waiting. Values are
held in the minimised form (a maximised metric negated), so one comparison serves both directions:
an eval improves when ``value < best - min_delta``. With ``min_delta`` 0 that is the plain
``value < best`` the trainer always used, so runs without early stopping are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class BestEval:
    """The best eval of a run and the early-stopping counter (``patience`` 0: never stops)."""

    patience: int = 0
    min_delta: float = 0.0
    best: float = math.inf  # the best objective so far, minimised form
    best_step: int | None = None  # the eval step (as logged) of ``best``
    bad_evals: int = 0  # evals since the last improvement
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_params: dict[str, np.ndarray] | None = None  # kept only when early stopping is on
    restored: bool = False  # the model's parameters were replaced by ``best_params``
    last_step: int | None = None  # the step of the latest eval

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    @property
    def stopped(self) -> bool:
        """Has the counter run out (never without early stopping)?"""
        return self.enabled and self.bad_evals >= self.patience

    def observe(self, step: int, value: float, metrics: Mapping[str, float],
                params: Mapping[str, np.ndarray]) -> bool:
        """Record the eval at ``step`` whose objective (minimised form) is ``value``; True when it
        improves on the best by more than ``min_delta``. A NaN value never improves."""
        self.last_step = int(step)
        if math.isfinite(value) and value < self.best - self.min_delta:
            self.best, self.best_step, self.bad_evals = value, int(step), 0
            self.best_metrics = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
            if self.enabled:  # copies: the optimizer updates the parameters in place
                self.best_params = {k: np.array(v, copy=True) for k, v in params.items()}
            return True
        self.bad_evals += 1
        return False

    def swap_into(self, params: dict[str, np.ndarray]) -> None:
        """Exchange ``params`` (updated in place) with the kept best parameters; twice is a
        no-op. The trainer restores the best at the end and resumes from the last."""
        if self.best_params is None:
            return
        for name, value in params.items():
            kept = self.best_params[name]
            self.best_params[name] = value.copy()
            value[...] = kept
        self.restored = not self.restored

    # -- the checkpoint's ``early_stop`` field --------------------------------------------------
    def to_meta(self) -> dict[str, Any] | None:
        """The checkpoint field (None without early stopping: such checkpoints have none)."""
        if not self.enabled:
            return None
        return {"best_step": self.best_step, "bad_evals": self.bad_evals,
                "metrics": dict(self.best_metrics), "restored": self.restored}

    def load_meta(self, saved: Mapping[str, Any] | None, best: float | None) -> None:
        """Continue from a checkpoint's validated ``early_stop`` field and best value
        (``best_val_loss``). Early stopping turned on at a resume of a checkpoint without the
        field starts afresh: the best eval's parameters were not kept."""
        if saved is None:
            if best is not None and not self.enabled:
                self.best = best
            return
        if best is not None:
            self.best = best
        self.best_step = saved["best_step"]
        self.bad_evals = saved["bad_evals"]
        self.best_metrics = dict(saved["metrics"])
        self.restored = saved["restored"]

    # -- the end-of-run words -------------------------------------------------------------------
    def summary(self, objective: str, direction: str, steps: int) -> str:
        """Why training ended and where the best was, for the end-of-run line: "stopped at step
        1400: no val_loss improvement of 0.001 in 5 evals; best 1.5461 at step 900, restored"."""
        if self.best_step is None:
            return f"no eval reported {objective}: nothing to restore"
        value = self.best if direction == "minimize" else -self.best
        where = f"best {value:.4f} at step {self.best_step}, restored"
        if not self.stopped:
            return f"all {steps} steps ran; {where}"
        delta = f" of more than {self.min_delta:g}" if self.min_delta > 0 else ""
        plural = "" if self.patience == 1 else "s"
        return (f"stopped at step {self.last_step}: no {objective} improvement{delta} in "
                f"{self.patience} eval{plural}; {where}")


__all__ = ["BestEval"]
