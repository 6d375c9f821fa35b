"""The training loop: batches -> the task's model forward/backward -> clip -> optimizer.

Everything here is ordinary Python around the numerical core (framework/nn/) and the task plugin
(framework/tasks/), which owns the model head, loss, metrics and samples. The loop is a
pure function of the step index wherever possible: feeds compute batch ``k`` from ``k`` and the
seed, dropout masks come from a generator seeded with ``(seed, step)``. A checkpoint therefore only
needs parameters, optimizer state, the carried hidden state and the smoothed loss for a resumed run
to end bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import CheckpointError, DivergenceError
from framework.nn.cell import load_kernels
from framework.registry import CELLS, CLIPS, DATASETS, OPTIMIZERS, SAMPLERS, SCHEDULES, TASKS
from framework.tasks.base import BEST_PREFIX
from framework.training.checkpoint import pack_arrays, read_for_resume, run_meta, save_rolling
from framework.training.config import RunConfig
from framework.training.early_stop import BestEval
from framework.training.resources import check_fits, training_estimate
from framework.training.runtime import Interrupted, StopSignals


@dataclass(frozen=True)
class StepStats:
    """What one training step reports: its index, loss per token, token count, gradient norm."""

    step: int
    loss: float
    tokens: int
    grad_norm: float
    fraction_clipped: float


# -- pruning (Optuna trials): an eval hook may stop the run; cli/train.py ends it as KILLED -----
class Pruned(Exception):
    """Raised at an eval when the eval hook (an Optuna trial's pruner) stops the run."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"pruned by the Optuna study at step {step}")
        self.step = step
        self.checkpoint = checkpoint
# -- end of pruning


@dataclass
class TrainResult:
    steps: int
    final_val_loss: float
    best_val_loss: float
    chars_per_sec: float
    final_checkpoint: Path | None
    best_checkpoint: Path | None
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    # The metrics of the model in the final checkpoint: the last eval's, or with early stopping
    # the best eval's (its parameters were restored).
    final_metrics: dict[str, float] = field(default_factory=dict)
    early_stop: str | None = None  # with early stopping: why training ended, where the best was
    best_step: int | None = None  # with early stopping: the step of the restored best eval


class Reporter:
    """Where the loop's side effects go: console lines, metrics, sample text."""

    def __init__(self, tracker: Any, console: Callable[[str], None]) -> None:
        self.tracker = tracker
        self.console = console
        self.sample_log: list[str] = []

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.tracker.log_metrics(values, step)

    def artifacts(self, folder: Path, artifact_path: str) -> None:
        """Log the files of ``folder`` (e.g. samples as MIDI files) under ``artifact_path``."""
        if folder.is_dir():
            self.tracker.log_artifacts(str(folder), artifact_path)

    def samples(self, header: str, texts: list[str], lines: list[str]) -> None:
        for line in lines:
            self.console(line)
        self.sample_log.append(header)
        self.sample_log.extend(texts)
        self.sample_log.append("")


def init_rng(rc: RunConfig, init: str) -> Any:
    # The course's init draws from the legacy global RandomState in a fixed order; honouring that
    # (a RandomState seeded like np.random.seed) is what makes `init: course` bit-identical.
    return np.random.RandomState(rc.seed) if init == "course" else np.random.default_rng(rc.seed)


class Trainer:
    """Builds every plugin from a validated config and runs the loop."""

    def __init__(self, rc: RunConfig, *, out_dir: Path, reporter: Reporter) -> None:
        self.rc = rc
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.report = reporter
        self.task = TASKS.get(rc.task.name)(rc.task)  # built from its validated schema
        self.dataset = DATASETS.build(rc.dataset)
        self.corpus = self.task.prepare_corpus(rc, self.dataset.load())
        self.task.check(rc, self.corpus)
        self.vocab = getattr(self.corpus, "vocab", None)  # None for real-valued series
        self.feed = self.task.make_feed(rc, self.corpus)
        # Before any parameter exists: a config that cannot fit in memory fails in one line.
        check_fits(training_estimate(rc, self.corpus, getattr(self.feed, "kind", "")))
        self.model = self.task.build_model(rc, self.corpus)
        self.model.init_params(init_rng(rc, rc.cell.init))
        for line in self.task.notes:  # e.g. how many words the pretrained vectors cover
            reporter.console(line)
        self.schedule = SCHEDULES.build(rc.lr_schedule)
        self.clip = CLIPS.build(rc.clip)
        self.optimizer = OPTIMIZERS.build(rc.optimizer)
        if getattr(rc.cell, "backend", "numpy") == "numba":  # the optimizer's compiled update too
            self.optimizer.use_compiled(load_kernels())
        self.sampler = SAMPLERS.build(rc.sampler)
        self.step = 0
        self.state = self.task.zero_state(self.model, self.feed, rc)
        self.smooth_loss = self.task.initial_loss(rc, self.corpus)
        stopping = rc.train.early_stop
        self.best = BestEval(patience=stopping.patience, min_delta=stopping.min_delta)
        self.last_metrics: dict[str, float] = {}
        self.history: dict[str, list[tuple[int, float]]] = {"train_loss": [], "smooth_loss": [],
                                                             "val_loss": []}
        self.last_checkpoint: Path | None = None
        self.best_checkpoint: Path | None = None
        # A checkpoint is only known good once the next step's loss, computed from its parameters,
        # passed the divergence check; until then it is "unverified".
        self.good_checkpoint: Path | None = None
        self._unverified: Path | None = None
        # -- pruning: called at every eval with (step, eval metrics); True stops (but the last)
        self.eval_hook: Callable[[int, dict[str, float]], bool] | None = None

    # -- checkpoints --------------------------------------------------------------------------
    def save(self, *, best: bool = False) -> Path:
        if not all(np.isfinite(v).all() for v in self.model.params.values()):
            # Never replace latest.npz by NaN/Inf parameters.
            raise DivergenceError(
                f"training diverged: parameters became NaN/Inf by step {self.step}; not saved; "
                f"try a lower optimizer.lr or clip=norm; last good checkpoint: "
                f"{self.good_checkpoint or 'none'}")
        # One write: latest.npz (and best.npz) are hard links to the step file, swapped in
        # atomically, so a kill at any moment leaves the previous latest intact.
        meta = run_meta(self.rc, vocab=self.vocab, corpus_kind=self.corpus.kind, step=self.step,
                        smooth_loss=self.smooth_loss, best_val_loss=self.best.best,
                        task=self.task.checkpoint_field(self.rc, self.corpus),
                        early_stop=self.best.to_meta())
        arrays = pack_arrays(self.model.params, self.optimizer.state_dict(), self.state,
                             kept=self.best.best_params)
        path = save_rolling(self.ckpt_dir, self.step, arrays, meta, best=best)
        self.last_checkpoint = self.ckpt_dir / "latest.npz"
        self._unverified = path
        if best:
            self.best_checkpoint = self.ckpt_dir / "best.npz"
        return path

    def restore(self, path: Path) -> None:
        """Continue from ``path``: refused (one line) unless the config can continue it."""
        saved = read_for_resume(path, config=self.rc.to_dict(), vocab=self.vocab,
                                params=self.model.params, steps=self.rc.train.steps)
        for name, value in saved.params.items():
            self.model.params[name][...] = value  # in place: the arrays keep their identity
        self.optimizer.load_state_dict(saved.optimizer_state)
        self.state = saved.carried_state
        self.step = saved.meta.step
        self.smooth_loss = saved.meta.smooth_loss
        self._unverified = Path(path)
        self.best.load_meta(saved.meta.early_stop, saved.meta.best_val_loss)
        kept = saved.kept_params
        if self.best.restored and kept is not None:
            # A finished run's checkpoint holds the restored best: go on from its last step.
            for name, value in kept.items():
                self.model.params[name][...] = value
            kept, self.best.restored = saved.params, False
        self.best.best_params = kept if self.best.enabled else None
        if self.best.stopped:
            raise CheckpointError(
                f"resume: {path} is {self.best.bad_evals} evals past its best (step "
                f"{self.best.best_step}), as many as train.early_stop.patience="
                f"{self.best.patience} allows; raise train.early_stop.patience to continue")

    # -- evaluation and sampling ----------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """The task's validation metrics (empty without a validation set)."""
        metrics = self.task.evaluate(self.model, self.feed, self.rc)
        self.last_metrics = metrics
        return metrics

    @property
    def best_val(self) -> float:
        """The best objective so far, as a value to minimise (inf before the first eval)."""
        return self.best.best

    def objective(self, metrics: dict[str, float]) -> float:
        """The task's objective as a value to minimise (NaN when it was not computed)."""
        value = metrics.get(self.task.objective, math.nan)
        return value if self.task.direction == "minimize" else -value

    def emit_samples(self, step: int) -> None:
        header, texts, lines = self.task.sample_lines(self, step)
        if lines:
            self.report.samples(header, texts, lines)

    # -- the step -----------------------------------------------------------------------------
    def train_step(self) -> StepStats:
        """One training step: batch ``self.step`` -> forward/backward -> clip -> divergence check ->
        optimizer update; advances ``self.step`` and the smoothed loss.  ``run()`` and the
        benchmark both call this, so the benchmark measures the code users run."""
        rc, model = self.rc, self.model
        step = self.step
        batch = self.feed.batch(step)
        rng = np.random.default_rng([rc.seed, step]) if rc.model.dropout > 0 else None
        mean = rc.train.loss == "mean"
        loss_sum, n, grads, state = self.task.loss_and_grads(model, batch, self.state, rc=rc,
                                                             dropout_rng=rng)
        clipped = self.clip(grads)
        per_char = loss_sum / n
        # NaN/Inf, or a loss no sane model reaches (a uniform guess costs ln V nats/char):
        # tanh saturation can keep a blown-up model finite, so finiteness alone misses it.
        if not (math.isfinite(clipped.norm) and per_char <= rc.train.divergence_loss):
            raise DivergenceError(
                f"training diverged at step {step}: loss {per_char:.4g} per token, "
                f"gradient norm {clipped.norm:.4g}; try a lower optimizer.lr (now "
                f"{rc.optimizer.lr}) or clip=norm; last good checkpoint: "
                f"{self.good_checkpoint or 'none (none was saved before this step)'}")
        if self._unverified is not None:  # its parameters just gave a sane loss
            self.good_checkpoint, self._unverified = self._unverified, None
        self.optimizer.lr = rc.optimizer.lr * self.schedule(step, rc.train.steps)
        self.optimizer.step(model.params, grads)
        self.state = state
        current = per_char if mean else loss_sum
        beta = rc.train.smoothing
        self.smooth_loss = beta * self.smooth_loss + (1.0 - beta) * current
        self.step = step + 1
        return StepStats(step=step, loss=per_char, tokens=n, grad_norm=clipped.norm,
                         fraction_clipped=clipped.fraction_clipped)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, progress: Any | None = None, stop: StopSignals | None = None) -> TrainResult:
        """Train up to ``train.steps``; evaluate, sample and checkpoint on schedule.  ``stop``
        (entered by the command line) ends the run after the current step, with a checkpoint."""
        rc = self.rc
        steps = rc.train.steps
        log_every = rc.train.log_every
        chars = 0
        started = time.perf_counter()
        window_chars, window_start = 0, started
        val_loss = math.nan
        if self.step == 0:  # baselines on the same split, once per run
            start = self.task.start_metrics(self.corpus, rc)
            if start:
                self.report.metrics(start, 0)
        while self.step < steps:
            stats = self.train_step()
            step, per_char, n = stats.step, stats.loss, stats.tokens
            chars += n
            window_chars += n
            if progress is not None:
                progress.update(1)
            if log_every and (step % log_every == 0 or self.step == steps):
                now = time.perf_counter()
                speed = window_chars / max(now - window_start, 1e-9)
                window_chars, window_start = 0, now
                self.report.metrics({
                    "train_loss": per_char, "smooth_loss": self.smooth_loss,
                    "train_bits_per_char": per_char / math.log(2),
                    "grad_norm": stats.grad_norm, "fraction_clipped": stats.fraction_clipped,
                    "chars_per_sec": speed, "lr": self.optimizer.lr}, step)
                self.history["train_loss"].append((step, per_char))
                self.history["smooth_loss"].append((step, self.smooth_loss))
                if progress is not None:
                    progress.set_postfix(loss=f"{self.smooth_loss:.3f}",
                                         chars_s=f"{speed:,.0f}", refresh=False)
            if rc.train.sample_every and step % rc.train.sample_every == 0:
                self.emit_samples(step)
            last = self.step == steps
            if (rc.train.eval_every and step % rc.train.eval_every == 0) or last:
                metrics = self.evaluate()
                val_loss = metrics.get("val_loss", math.nan)
                if metrics:
                    if math.isfinite(val_loss):
                        self.history["val_loss"].append((step, val_loss))
                    self.report.metrics(metrics, step)
                better = bool(metrics) and self.best.observe(step, self.objective(metrics),
                                                             metrics, self.model.params)
                if better and rc.train.checkpoint_every:
                    self.save(best=True)
                # -- pruning: the trial stops here, with a checkpoint of where it stopped
                if self.eval_hook is not None and metrics and self.eval_hook(
                        step, metrics) and not last:
                    raise Pruned(step, self.save())
            if rc.train.checkpoint_every and (step % rc.train.checkpoint_every == 0 or last):
                self.save()
            if stop is not None and stop.requested:
                raise Interrupted(stop.signum, self.save())
            if self.best.stopped:
                break
        elapsed = time.perf_counter() - started
        final_metrics, summary = dict(self.last_metrics), None
        if self.best.enabled and self.step > 0:
            summary = self.best.summary(self.task.objective, self.task.direction, steps)
            if self.best.best_params is not None:
                self.best.swap_into(self.model.params)  # the final checkpoint holds the best
                final_metrics = dict(self.best.best_metrics)
                self.save()
                # best_<metric> of every metric of the best eval (best_<objective> among them):
                # the restored model's, which compare tables and sweep summaries rank by.
                self.report.metrics({"best_step": float(self.best.best_step),
                                     **{BEST_PREFIX + k: v for k, v in final_metrics.items()}},
                                    self.best.last_step or 0)
        if self.step > 0 and rc.train.checkpoint_every == 0 and not self.best.restored:
            self.save()  # a finished run always leaves a final checkpoint
        final = self.last_checkpoint
        return TrainResult(steps=self.step, final_val_loss=val_loss, best_val_loss=self.best_val,
                           chars_per_sec=chars / elapsed if elapsed > 0 else 0.0,
                           final_checkpoint=final, best_checkpoint=self.best_checkpoint,
                           history=self.history, samples=self.report.sample_log,
                           final_metrics=final_metrics, early_stop=summary,
                           best_step=self.best.best_step if self.best.restored else None)


def print_line(text: str) -> None:
    """Console output that does not fight the progress bar."""
    try:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(text)


__all__ = ["CELLS", "Interrupted", "Pruned", "Reporter", "TrainResult", "Trainer", "print_line"]
