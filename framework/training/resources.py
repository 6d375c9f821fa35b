"""Memory a training config needs, against the memory this process can get: checked before any
parameter is allocated, so a config that cannot fit fails in one line instead of swapping or
being killed.

The estimate counts what one training step holds at once: parameters, their gradients, the
optimizer's per-parameter buffers (and one scratch copy), the forward caches the backward pass
reads (gate values, states and outputs of every layer at every time step) and the logits with
their gradient.  It leaves out small things (the data, sampling state, temporaries that are not
alive together), so it errs low: a config it refuses does not fit.  ``RNNLAB_SKIP_MEMORY_CHECK=1``
turns the check off (for machines whose swap or overcommit it cannot see).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.errors import ConfigError

SKIP_ENV = "RNNLAB_SKIP_MEMORY_CHECK"
_UNLIMITED = 1 << 62  # cgroup v1 reports "no limit" as a number this large


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training step of a config holds, by part."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations


def parameter_count(*, vocab_size: int, hidden_size: int, num_layers: int, gates: int) -> int:
    """Parameters of the stack: per layer ``W_x`` (D, G*H), ``W_h`` (H, G*H), ``b`` (G*H), with
    D = V for the first layer (its input is token ids) and H above; then ``out.W``, ``out.b``."""
    V, H, G = int(vocab_size), int(hidden_size), int(gates)
    layers = sum(((V if layer == 0 else H) + H + 1) * G * H for layer in range(int(num_layers)))
    return layers + H * V + V


def estimate(*, vocab_size: int, hidden_size: int, num_layers: int, gates: int,
             state_size: int, optimizer_slots: int, steps: int, batch: int,
             itemsize: int) -> MemoryEstimate:
    """Bytes of one training step over a (``steps``, ``batch``) batch."""
    n_params = parameter_count(vocab_size=vocab_size, hidden_size=hidden_size,
                               num_layers=num_layers, gates=gates)
    tokens = int(steps) * int(batch)
    # Per token and layer: gate pre-activations and their gradients (2G), states (S), output (1).
    per_token = int(num_layers) * (2 * gates + state_size + 1) * hidden_size + 2 * vocab_size
    return MemoryEstimate(parameters=n_params * itemsize, gradients=n_params * itemsize,
                          optimizer=(optimizer_slots + 1) * n_params * itemsize,
                          activations=tokens * per_token * itemsize)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> tuple[int, str] | None:
    """``(bytes, where it was read)``: the tightest of MemAvailable, the cgroup limit and
    ``ulimit -v``; None when none of them can be read."""
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            found.append((pages, "free physical memory"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < _UNLIMITED:
            found.append((max(0, limit - usage), f"the memory limit of this cgroup ({limit_file})"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        size = 0
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmSize:"):
                    size = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        found.append((max(0, soft - size), "the address-space limit (ulimit -v)"))
    return min(found) if found else None


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def training_estimate(rc: Any, corpus: Any, feed_kind: str) -> MemoryEstimate:
    """The estimate for a validated run config on its loaded corpus."""
    import numpy as np

    from framework.registry import CELLS, OPTIMIZERS

    cell_cls, optim_cls = CELLS.get(rc.cell.name), OPTIMIZERS.get(rc.optimizer.name)
    if feed_kind in ("names", "example"):  # a batch is as long as its longest name (+ start)
        steps = 1 + max((len(x) for x in corpus.train), default=0)
    else:
        steps = rc.train.seq_len
    vocab = getattr(corpus, "vocab", None)
    # Token inputs are one-hot rows of the vocabulary; real-valued series have `dim` features.
    width = vocab.size if vocab is not None else int(getattr(corpus, "dim", 1))
    return estimate(vocab_size=width, hidden_size=rc.cell.hidden_size,
                    num_layers=rc.model.num_layers, gates=int(getattr(cell_cls, "gates", 1)),
                    state_size=int(getattr(cell_cls, "state_size", 1)),
                    optimizer_slots=len(getattr(optim_cls, "slots", ("m", "v"))),
                    steps=steps, batch=1 if feed_kind == "example" else rc.train.batch_size,
                    itemsize=np.dtype(rc.dtype).itemsize)


def check_fits(need: MemoryEstimate, available: tuple[int, str] | None = None) -> None:
    """Raise a one-line ConfigError when ``need`` exceeds the memory available."""
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return
    available = available_memory() if available is None else available
    if available is None or need.total <= available[0]:
        return
    raise ConfigError(
        f"this config needs about {_gib(need.total)} of memory per training step (parameters "
        f"{_gib(need.parameters)}, gradients {_gib(need.gradients)}, optimizer state "
        f"{_gib(need.optimizer)}, activations {_gib(need.activations)}) but {_gib(available[0])} "
        f"is available ({available[1]}); lower cell.hidden_size, model.num_layers, "
        f"train.batch_size or train.seq_len (or set {SKIP_ENV}=1 to try anyway)")


__all__ = ["MemoryEstimate", "available_memory", "check_fits", "estimate", "parameter_count",
           "training_estimate"]
