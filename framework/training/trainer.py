"""The training loop: batches -> cell forward -> softmax/xent -> backward -> clip -> optimizer.

Everything here is ordinary Python around the numerical core (framework/nn/stack.py). The loop is a
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

from framework.data.feeds import make_feed
from framework.errors import CheckpointError, DivergenceError
from framework.nn.sampling import generate
from framework.nn.schedules import lr_factor
from framework.nn.stack import CharRNN
from framework.registry import CELLS, CLIPS, DATASETS, OPTIMIZERS, SAMPLERS
from framework.training.checkpoint import load_checkpoint, save_rolling
from framework.training.config import RunConfig
from framework.training.resources import check_fits, training_estimate
from framework.training.runtime import Interrupted, StopSignals

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class StepStats:
    """What one training step reports: its index, loss per token, token count, gradient norm."""

    step: int
    loss: float
    tokens: int
    grad_norm: float
    fraction_clipped: float


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


class Reporter:
    """Where the loop's side effects go: console lines, metrics, sample text."""

    def __init__(self, tracker: Any, console: Callable[[str], None]) -> None:
        self.tracker = tracker
        self.console = console
        self.sample_log: list[str] = []

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.tracker.log_metrics(values, step)

    def samples(self, header: str, texts: list[str], lines: list[str]) -> None:
        for line in lines:
            self.console(line)
        self.sample_log.append(header)
        self.sample_log.extend(texts)
        self.sample_log.append("")


def build_model(rc: RunConfig, vocab_size: int) -> CharRNN:
    cell_options = rc.options("cell")
    hidden_size = cell_options.pop("hidden_size")
    init = cell_options.pop("init")
    return CharRNN(cell=rc.cell.name, vocab_size=vocab_size, hidden_size=hidden_size,
                   num_layers=rc.model.num_layers, dropout=rc.model.dropout, init=init,
                   dtype=rc.dtype, cell_options=cell_options)


def feed_kind(rc: RunConfig, corpus_kind: str) -> str:
    if rc.train.feed != "auto":
        return rc.train.feed
    return "names" if corpus_kind == "lines" else "stream"


def init_rng(rc: RunConfig, init: str) -> Any:
    # The course's init draws from the legacy global RandomState in a fixed order; honouring that
    # (a RandomState seeded like np.random.seed) is what makes `init: course` bit-identical.
    return np.random.RandomState(rc.seed) if init == "course" else np.random.default_rng(rc.seed)


def state_arrays(state: list[tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
    return {f"state/{i}/{j}": part for i, layer in enumerate(state) for j, part in enumerate(layer)}


def state_from_arrays(arrays: dict[str, np.ndarray], template: list[tuple]) -> list[tuple]:
    state = []
    for i, layer in enumerate(template):
        parts = []
        for j, part in enumerate(layer):
            saved = arrays.get(f"state/{i}/{j}")
            # The batch dimension may differ: the names feed's last batch of an epoch is short
            # (and the next batch resets the state anyway); the hidden size may not.
            if saved is None or saved.ndim != part.ndim or saved.shape[1:] != part.shape[1:]:
                raise CheckpointError("checkpoint's carried hidden state does not fit this model; "
                                      "resume with the batch size it was trained with")
            parts.append(saved.astype(part.dtype, copy=False))
        state.append(tuple(parts))
    return state


class Trainer:
    """Builds every plugin from a validated config and runs the loop."""

    def __init__(self, rc: RunConfig, *, out_dir: Path, reporter: Reporter) -> None:
        self.rc = rc
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.report = reporter
        dataset = DATASETS.build(rc.dataset)
        self.corpus = dataset.load()
        self.vocab = self.corpus.vocab
        self.feed_kind = feed_kind(rc, self.corpus.kind)
        # Before any parameter exists: a config that cannot fit in memory fails in one line.
        check_fits(training_estimate(rc, self.corpus, self.feed_kind))
        self.model = build_model(rc, self.vocab.size)
        self.model.init_params(init_rng(rc, rc.cell.init))
        self.feed = make_feed(self.feed_kind, self.corpus, batch_size=rc.train.batch_size,
                              seq_len=rc.train.seq_len, seed=rc.seed,
                              shuffle_seed=rc.train.shuffle_seed, stride=rc.train.stride,
                              window_targets=rc.train.window_targets)
        self.clip = CLIPS.build(rc.clip)
        self.optimizer = OPTIMIZERS.build(rc.optimizer)
        self.sampler = SAMPLERS.build(rc.sampler)
        self.step = 0
        self.state = self.model.zero_state(self._batch_width())
        tokens = rc.train.smooth_init_tokens
        if tokens is None:
            tokens = 1 if rc.train.loss == "mean" else rc.train.seq_len
        self.smooth_loss = math.log(self.vocab.size) * tokens
        self.best_val = math.inf
        self.history: dict[str, list[tuple[int, float]]] = {"train_loss": [], "smooth_loss": [],
                                                             "val_loss": []}
        self.last_checkpoint: Path | None = None
        self.best_checkpoint: Path | None = None
        # A checkpoint is only known good once the next step's loss, computed from its parameters,
        # passed the divergence check; until then it is "unverified".
        self.good_checkpoint: Path | None = None
        self._unverified: Path | None = None

    def _batch_width(self) -> int:
        return 1 if self.feed_kind == "example" else self.rc.train.batch_size

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint_meta(self) -> dict[str, Any]:
        rc = self.rc
        return {
            "format_version": CHECKPOINT_FORMAT,
            "cell": rc.cell.name,
            "model": {"hidden_size": rc.cell.hidden_size, "num_layers": rc.model.num_layers,
                      "dropout": rc.model.dropout, "init": rc.cell.init, "dtype": rc.dtype,
                      "cell_options": {k: v for k, v in rc.options("cell").items()
                                       if k not in ("hidden_size", "init")}},
            "vocab": self.vocab.to_json(),
            "dataset": rc.dataset.name,
            "corpus_kind": self.corpus.kind,
            "optimizer": rc.optimizer.name,
            "step": self.step,
            "smooth_loss": self.smooth_loss,
            "best_val_loss": None if math.isinf(self.best_val) else self.best_val,
            "generate": {"window": rc.generate.window},
            "config": rc.raw,
        }

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        arrays.update({f"optim/{k}": np.asarray(v)
                       for k, v in self.optimizer.state_dict().items()})
        arrays.update(state_arrays(self.state))
        return arrays

    def save(self, *, best: bool = False) -> Path:
        if not all(np.isfinite(v).all() for v in self.model.params.values()):
            # Never replace latest.npz by NaN/Inf parameters.
            raise DivergenceError(
                f"training diverged: parameters became NaN/Inf by step {self.step}; not saved; "
                f"try a lower optimizer.lr or clip=norm; last good checkpoint: "
                f"{self.good_checkpoint or 'none'}")
        # One write: latest.npz (and best.npz) are hard links to the step file, swapped in
        # atomically, so a kill at any moment leaves the previous latest intact.
        path = save_rolling(self.ckpt_dir, self.step, self.checkpoint_arrays(),
                            self.checkpoint_meta(), best=best)
        self.last_checkpoint = self.ckpt_dir / "latest.npz"
        self._unverified = path
        if best:
            self.best_checkpoint = self.ckpt_dir / "best.npz"
        return path

    def restore(self, path: Path) -> None:
        from framework.training.resume import check_resume_compatible

        arrays, meta = load_checkpoint(path)
        check_resume_compatible(meta, self.rc, self.vocab)
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        for name, value in self.model.params.items():
            saved = params.get(name)
            if saved is None or saved.shape != value.shape or saved.dtype != value.dtype:
                raise CheckpointError(f"checkpoint {path} has no parameter '{name}' of shape "
                                      f"{value.shape} {value.dtype}; it is from another model")
            value[...] = saved
        self.optimizer.load_state_dict(
            {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
        self.state = state_from_arrays(arrays, self.state)
        self.step = int(meta["step"])
        self.smooth_loss = float(meta["smooth_loss"])
        self._unverified = Path(path)
        if meta.get("best_val_loss") is not None:
            self.best_val = float(meta["best_val_loss"])

    # -- evaluation and sampling ----------------------------------------------------------------
    def evaluate(self) -> float:
        total, count = 0.0, 0
        state = None
        limit = self.rc.train.eval_batches
        for index, batch in enumerate(self.feed.val_batches()):
            if limit and index >= limit:
                break
            width = batch.inputs.shape[1]
            if batch.reset or state is None or state[0][0].shape[0] != width:
                state = self.model.zero_state(width)
            loss_sum, n, state = self.model.loss(batch.inputs, batch.targets, state)
            total += loss_sum
            count += n
        return total / count if count else math.nan

    def sample_texts(self) -> list[str]:
        rc = self.rc
        length = rc.train.sample_length
        return generate(self.model, self.vocab, self.sampler, prompt="", length=length,
                        num_samples=rc.train.num_samples, window=rc.generate.window,
                        rng=np.random.default_rng([rc.seed, self.step]))

    def emit_samples(self, step: int) -> None:
        texts = self.sample_texts()
        if self.rc.train.report == "course":
            header = f"Iteration: {step}, Loss: {self.smooth_loss:f}"
            names = [t[:1].upper() + t[1:] for t in texts]
            self.report.samples(header, names, [header, "", *names, ""])
        else:
            header = f"step {step}: smoothed loss {self.smooth_loss:.4f}"
            self.report.samples(header, texts, [f"--- samples at {header}",
                                                *sample_lines(texts)])

    # -- the step -----------------------------------------------------------------------------
    def train_step(self) -> StepStats:
        """One training step: batch ``self.step`` -> forward/backward -> clip -> divergence check ->
        optimizer update; advances ``self.step`` and the smoothed loss.  ``run()`` and the
        benchmark both call this, so the benchmark measures the code users run."""
        rc, model = self.rc, self.model
        step = self.step
        batch = self.feed.batch(step)
        if batch.reset:
            self.state = model.zero_state(batch.inputs.shape[1])
        rng = np.random.default_rng([rc.seed, step]) if rc.model.dropout > 0 else None
        mean = rc.train.loss == "mean"
        loss_sum, n, grads, state = model.loss_and_grads(
            batch.inputs, batch.targets, self.state,
            reduction="mean" if mean else "sum", dropout_rng=rng)
        clipped = self.clip(grads)
        per_char = loss_sum / n
        # NaN/Inf, or a loss no sane model reaches (a uniform guess costs ln V nats/char):
        # tanh saturation can keep a blown-up model finite, so finiteness alone misses it.
        if not (math.isfinite(clipped.norm) and per_char <= rc.train.divergence_loss):
            raise DivergenceError(
                f"training diverged at step {step}: loss {per_char:.4g} nats/char, "
                f"gradient norm {clipped.norm:.4g}; try a lower optimizer.lr (now "
                f"{rc.optimizer.lr}) or clip=norm; last good checkpoint: "
                f"{self.good_checkpoint or 'none (none was saved before this step)'}")
        if self._unverified is not None:  # its parameters just gave a sane loss
            self.good_checkpoint, self._unverified = self._unverified, None
        self.optimizer.lr = rc.optimizer.lr * lr_factor(
            step, rc.train.steps, rc.train.lr_schedule, rc.train.lr_final, rc.train.warmup_steps)
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
                val_loss = self.evaluate()
                if math.isfinite(val_loss):
                    self.history["val_loss"].append((step, val_loss))
                    self.report.metrics({"val_loss": val_loss,
                                         "val_bits_per_char": val_loss / math.log(2)}, step)
                better = math.isfinite(val_loss) and val_loss < self.best_val
                if better:
                    self.best_val = val_loss
                    if rc.train.checkpoint_every:
                        self.save(best=True)
            if rc.train.checkpoint_every and (step % rc.train.checkpoint_every == 0 or last):
                self.save()
            if stop is not None and stop.requested:
                raise Interrupted(stop.signum, self.save())
        elapsed = time.perf_counter() - started
        if self.step > 0 and rc.train.checkpoint_every == 0:
            self.save()  # a finished run always leaves a final checkpoint
        final = self.last_checkpoint
        return TrainResult(steps=self.step, final_val_loss=val_loss, best_val_loss=self.best_val,
                           chars_per_sec=chars / elapsed if elapsed > 0 else 0.0,
                           final_checkpoint=final, best_checkpoint=self.best_checkpoint,
                           history=self.history, samples=self.report.sample_log)


def sample_lines(texts: list[str]) -> list[str]:
    """Samples as console lines: each line indented, samples of several lines separated by a
    blank line, control characters other than tab and line break shown escaped."""
    multi = any("\n" in t for t in texts)
    out: list[str] = []
    for i, text in enumerate(texts):
        shown = "".join(c if c in "\n\t" or c.isprintable() else repr(c)[1:-1] for c in text)
        if multi and i:
            out.append("")
        out += [f"  {line}" for line in shown.split("\n")]
    return out


def print_line(text: str) -> None:
    """Console output that does not fight the progress bar."""
    try:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(text)


__all__ = ["CELLS", "Interrupted", "Reporter", "TrainResult", "Trainer", "print_line"]
