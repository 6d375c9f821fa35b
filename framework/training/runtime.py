"""Process-wide side effects of a training command: BLAS threads, malloc tuning, signals, locks.

Everything here changes the state of the whole process, so only the command-line entry points
enter it (the training app, the benchmark); constructing a model or a trainer changes nothing.

* BLAS threads: an RNN step multiplies small matrices (batch x hidden), where OpenBLAS's threads
  cost more in hand-offs than they gain, and on a busy machine spinning threads slow training by
  an order of magnitude. rnnlab trains with one BLAS thread unless told otherwise (``threads=2``,
  or ``threads=null`` for the library's default).
* malloc: see :func:`keep_freed_memory`.
* Signals: SIGINT, SIGTERM and SIGHUP (a closed terminal or SSH session) become a flag that the
  training loop checks between steps (:class:`StopSignals`); no signal ever raises inside
  checkpoint writing or MLflow logging, so a second or third signal cannot leave a run RUNNING
  or print a traceback from the middle of a database call.
* The output directory is locked while a job uses it (:func:`claim_output_dir`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from framework.errors import ConfigError

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit BLAS to ``limit`` threads inside the block (None: leave the library's default)."""
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="blas"):
        yield


_MALLOC_TUNED = False


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed blocks of up to 32 MiB in the heap for reuse.

    A training step allocates ~5-15 MB of short-lived arrays (activations, caches, gradients).
    By default glibc hands blocks that large back to the OS on free (mmap, heap trimming), so
    every step page-faults them in again: ~2,700 minor faults and 4-7 ms of kernel time per
    LSTM H128-256 / B64 step, 15-20% of the step (measured with getrusage, docs/performance.md).
    This is what ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` do; if the user set
    either, or the C library is not glibc, nothing is changed.  Cost: the heap stays at its peak
    size instead of shrinking between steps.  Idempotent.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        libc = ctypes.CDLL(None)
    except (ValueError, OSError, AttributeError):  # no confstr name / no C library handle
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h> constants
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 128 << 20)


class StopSignals:
    """SIGINT/SIGTERM/SIGHUP as a request to stop, recorded instead of raised.

    ``signum`` is the first signal received (None until then) and ``count`` how many arrived.
    The training loop checks :attr:`requested` after every step, writes a checkpoint and stops;
    the code around it (final logging) checks it between artifacts and skips the rest.  While
    :meth:`raising` is active (loading data, before anything needs cleaning up) a signal raises
    KeyboardInterrupt at once instead.  Only the main thread can install handlers; elsewhere
    (a thread-based launcher) this is a no-op flag that is never set.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._raise = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        if self._raise:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Inside the block a signal raises KeyboardInterrupt (nothing to save yet)."""
        self._raise = True
        try:
            if self.requested:
                raise KeyboardInterrupt
            yield
        finally:
            self._raise = False


class Interrupted(Exception):
    """Raised after a stop signal once the current step finished and a checkpoint was written."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.checkpoint = checkpoint


def claim_output_dir(out_dir: Path) -> IO[str]:
    """Lock the job's output directory for as long as the returned file stays open.

    Two live jobs writing one checkpoints/ folder would log each other's checkpoints to MLflow;
    the second one is refused instead.  (The kernel drops the lock when a job dies, even by
    kill -9, so a later job - a resume - can use the directory again.)
    """
    import fcntl

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(out_dir / ".rnnlab.lock", "a+")  # held open until the run ends
    except OSError as exc:
        raise ConfigError(f"cannot write the output directory {out_dir} "
                          f"({exc.strerror or exc}); choose a writable hydra.run.dir") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(f"output directory {out_dir} is in use by another running rnnlab job; "
                          f"give each job its own hydra.run.dir") from None
    return handle


__all__ = ["STOP_SIGNALS", "Interrupted", "StopSignals", "blas_threads", "claim_output_dir",
           "keep_freed_memory"]
