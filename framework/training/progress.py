"""Progress of a training run: a bar on a terminal, a status line at a steady interval elsewhere.

Both take what the trainer reports (``update`` after every step, ``set_postfix`` with the smoothed
loss and the throughput at every log step) and show the step, the loss, the throughput, the time
so far and the time left.  On a terminal that is a tqdm bar (redrawn in place, erased at the end);
in a log file or a sweep worker it is one line every ``train.status_every`` seconds, so a long
run is never silent between its sample prints.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

MODES = ("auto", "always", "never")


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class StatusLines:
    """One line of progress every ``every`` seconds (and none when ``every`` is 0)."""

    def __init__(self, total: int, initial: int = 0, *, every: float = 30.0,
                 stream: TextIO | None = None, clock: Any = time.monotonic) -> None:
        self.total, self.step, self.every = int(total), int(initial), float(every)
        self.first = int(initial)
        self.stream = stream
        self.clock = clock
        self.started = self.last = clock()
        self.postfix: dict[str, str] = {}

    def __enter__(self) -> StatusLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_postfix(self, refresh: bool = False, **fields: str) -> None:
        self.postfix = {k: str(v) for k, v in fields.items()}

    def update(self, n: int = 1) -> None:
        self.step += n
        now = self.clock()
        if self.every > 0 and now - self.last >= self.every and self.step < self.total:
            self.last = now
            print(self.line(now), file=self.stream or sys.stdout, flush=True)

    def line(self, now: float) -> str:
        elapsed = now - self.started
        done = self.step - self.first
        left = (self.total - self.step) * elapsed / done if done > 0 else float("nan")
        fields = "".join(f", {k.replace('_s', '/s')} {v}" for k, v in self.postfix.items())
        eta = _clock(left) if left == left else "?"
        return (f"step {self.step}/{self.total} ({100 * self.step / max(self.total, 1):.0f}%)"
                f"{fields}, {_clock(elapsed)} elapsed, {eta} left")


def progress(mode: str, total: int, initial: int, *, every: float) -> Any:
    """The progress display for ``train.progress``: ``auto`` (a bar on a terminal, status lines
    otherwise), ``always`` (a bar), ``never`` (nothing but the run's own lines)."""
    if mode == "never":
        return StatusLines(total, initial, every=0)
    if mode == "auto" and not sys.stderr.isatty():
        return StatusLines(total, initial, every=every)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False,
                file=sys.stderr)


__all__ = ["MODES", "StatusLines", "progress"]
