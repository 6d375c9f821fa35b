"""Learning-rate schedules: the factor applied to ``optimizer.lr`` at each step.

A pure function of the step (like the feeds), so a resumed run follows the same schedule.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total_steps: int, schedule: str = "constant", final: float = 0.1,
              warmup_steps: int = 0) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or a cosine decay to ``final``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
