"""Learning-rate schedules (registry SCHEDULES, chosen by ``train.lr_schedule``).

A schedule maps the step to the factor applied to ``optimizer.lr``. It is a pure function of the
step (like the feeds), so a resumed run follows the same schedule. Its options are ``train.*``
keys declared by its schema (``train.warmup_steps``, ``train.lr_final``). :class:`Schedule` does
the linear warm-up every schedule shares; a schedule implements :meth:`Schedule.decay`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from framework.registry import SCHEDULES, Plugin


@dataclass
class ScheduleConfig:
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")


class Schedule(Plugin):
    """``schedule(step, total_steps) -> factor``: warm-up, then :meth:`decay`."""

    schema = ScheduleConfig

    def __call__(self, step: int, total_steps: int) -> float:
        warmup = self.cfg.warmup_steps
        if warmup and step < warmup:
            return (step + 1) / warmup
        return self.decay(step - warmup, total_steps - warmup)

    def decay(self, step: int, steps: int) -> float:
        """The factor at ``step`` of the ``steps`` that follow the warm-up."""
        raise NotImplementedError


@SCHEDULES.register("constant")
class Constant(Schedule):
    """The factor stays 1 after the warm-up."""

    def decay(self, step: int, steps: int) -> float:
        return 1.0


@dataclass
class CosineConfig(ScheduleConfig):
    lr_final: float = 0.1  # the factor reached at the last step

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.lr_final <= 1.0:
            raise ValueError(f"train.lr_final must be in [0, 1], got {self.lr_final}")


@SCHEDULES.register("cosine", schema=CosineConfig)
class Cosine(Schedule):
    """Half a cosine from 1 at the first step after the warm-up to ``lr_final`` at the last."""

    def decay(self, step: int, steps: int) -> float:
        final = self.cfg.lr_final
        progress = min(1.0, max(0.0, step / max(1, steps - 1)))
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


__all__ = ["Constant", "Cosine", "CosineConfig", "Schedule", "ScheduleConfig"]
