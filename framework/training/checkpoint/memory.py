"""Memory a checkpoint may take: what the system can give, checked before anything is read."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MAX_CHECKPOINT_BYTES = 256 << 30  # a hard cap above whatever memory the machine reports


def memory_limit() -> int:
    """Bytes a checkpoint's arrays may take in memory: what the system reports as available
    (MemAvailable, or a container's lower memory limit), at most ``MAX_CHECKPOINT_BYTES``."""
    available = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 << 30
    with contextlib.suppress(OSError, ValueError):
        # A container's own limit (cgroup v2).  Its usage is not subtracted: it counts page
        # cache the kernel would reclaim, which MemAvailable already accounts for.
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap != "max":
            available = min(available, int(cap))
    return max(0, min(available, MAX_CHECKPOINT_BYTES))


def gb(nbytes: int) -> str:
    """A byte count for a message: MB, or GB from 0.1 GB on."""
    return f"{nbytes / 1e9:,.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:,.1f} MB"


__all__ = ["MAX_CHECKPOINT_BYTES", "gb", "memory_limit"]
