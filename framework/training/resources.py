"""Memory a training config needs, against the memory this process can get: checked before any
parameter is allocated, so a config that cannot fit fails in one line instead of swapping or
being killed.

What is available, and the check itself, are :mod:`framework.memory`'s, which also sizes the
classifier's baseline, predictions and served requests.

The estimate counts what one training step holds at once: parameters, their gradients, the
optimizer's per-parameter buffers (and one scratch copy), and what the run's task says its batch
holds (:meth:`framework.tasks.base.Task.training_memory`: the forward caches the backward pass
reads, the head's outputs with their gradient, a seq2seq model's attention, pretrained vectors).
It leaves out small things (the data, sampling state, temporaries that are not
alive together), so it errs low: a config it refuses does not fit.  ``RNNLAB_SKIP_MEMORY_CHECK=1``
turns the check off (for machines whose swap or overcommit it cannot see).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from framework.errors import ConfigError
from framework.memory import SKIP_ENV, available_memory, gib, shortfall


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training step of a config holds, by part."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int
    # The settings that lower it, named by the one-line error.
    settings: tuple[str, ...] = field(default=("cell.hidden_size", "model.num_layers",
                                               "train.batch_size", "train.seq_len"))

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations


def training_estimate(rc: Any, corpus: Any, feed_kind: str) -> MemoryEstimate:
    """The estimate for a validated run config on its loaded corpus: the run's task says what
    its model's parameters and one batch's forward caches hold
    (:meth:`framework.tasks.base.Task.training_memory`); the optimizer adds its slots."""
    import numpy as np

    from framework.registry import OPTIMIZERS, TASKS

    task = TASKS.get(rc.task.name)(rc.task)
    n_params, activations, settings = task.training_memory(rc, corpus, feed_kind)
    slots = len(getattr(OPTIMIZERS.get(rc.optimizer.name), "slots", ("m", "v")))
    size = n_params * np.dtype(rc.dtype).itemsize
    return MemoryEstimate(parameters=size, gradients=size, optimizer=(slots + 1) * size,
                          activations=int(activations), settings=tuple(dict.fromkeys(settings)))


def check_fits(need: MemoryEstimate, available: tuple[int, str] | None = None) -> None:
    """Raise a one-line ConfigError when ``need`` exceeds the memory available."""
    short = shortfall(need.total, available_memory() if available is None else available)
    if short is None:
        return
    raise ConfigError(
        f"this config needs about {gib(need.total)} of memory per training step (parameters "
        f"{gib(need.parameters)}, gradients {gib(need.gradients)}, optimizer state "
        f"{gib(need.optimizer)}, activations {gib(need.activations)}) but {short}; lower "
        f"{_either(need.settings)} (or set {SKIP_ENV}=1 to try anyway)")


def _either(settings: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return settings[0] if len(settings) == 1 else f"{', '.join(settings[:-1])} or {settings[-1]}"


__all__ = ["MemoryEstimate", "available_memory", "check_fits", "training_estimate"]
