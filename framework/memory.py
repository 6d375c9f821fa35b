"""Memory checked before it is spent: what this process can get; one line when a need exceeds it.

Training configs are sized in :mod:`framework.training.resources` (each task says what its
model and batch hold: :func:`model_values`, :func:`forward_bytes`); evaluation, baselines,
decoding, predictions and served requests call :func:`check_buffers` before their arrays exist. The
available memory is the tightest of MemAvailable, the cgroup limit and ``ulimit -v``.
``RNNLAB_SKIP_MEMORY_CHECK=1`` turns every check off (for machines whose swap or overcommit it
cannot see).
"""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path
from typing import Any

from framework.errors import ConfigError

SKIP_ENV = "RNNLAB_SKIP_MEMORY_CHECK"
_UNLIMITED = 1 << 62  # cgroup v1 reports "no limit" as a number this large


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


def gib(n: int) -> str:
    """Bytes as GiB (MiB below one GiB, bytes below one MiB) for a message."""
    if n >= 2**30:
        return f"{n / 2**30:,.1f} GiB"
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def shortfall(nbytes: int, available: tuple[int, str] | None = None) -> str | None:
    """``"<available> is available (<where>)"`` when ``nbytes`` do not fit, else None (also when
    the check is off or nothing can be read): the one test of every memory check."""
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return None
    available = available_memory() if available is None else available
    if available is None or nbytes <= available[0]:
        return None
    return f"{gib(available[0])} is available ({available[1]})"


def check_buffers(what: str, nbytes: int, detail: str, fix: str,
                  available: tuple[int, str] | None = None) -> None:
    """Raise a one-line ConfigError when ``what`` (evaluation, a baseline, a prediction, a
    served request) would allocate ``nbytes`` that do not fit; ``detail`` says what the bytes
    are, ``fix`` what to lower."""
    short = shortfall(nbytes, available)
    if short is not None:
        raise ConfigError(f"{what} needs about {gib(nbytes)} of memory ({detail}) but "
                          f"{short}; {fix} (or set {SKIP_ENV}=1 to try anyway)")


def forward_bytes(model: Any, batch: int, steps: int) -> int:
    """Bytes of one forward pass of a sequence model over a (``steps``, ``batch``) batch: its
    input rows (one-hot over the vocabulary, or embedded ids) and, per layer and direction,
    the gate values, states and outputs it keeps for every step."""
    import numpy as np

    hidden = int(getattr(model, "hidden_size", 0))
    cell = getattr(model, "cell", None)
    gates, state = int(getattr(cell, "gates", 4)), int(getattr(cell, "state_size", 2))
    embedding = getattr(model, "embedding", None)
    if embedding is not None:  # embedded ids: a row of the table per step
        width = int(embedding.size)
    elif getattr(model, "ids", hasattr(model, "vocab_size")):  # ids: a gathered row per step
        width = hidden
    else:  # real values
        width = int(getattr(model, "input_size", 1))
    directions = 2 if getattr(model, "bidirectional", False) else 1
    per_step = width + int(getattr(model, "num_layers", 1)) * directions * (gates + state + 1) \
        * hidden
    itemsize = np.dtype(getattr(model, "dtype", "float32")).itemsize
    return int(batch) * int(steps) * per_step * itemsize


def _values(shapes: Any) -> int:
    return sum(math.prod(int(n) for n in shape) for shape in shapes.values())


def _is_stack(obj: Any) -> bool:
    """A recurrent stack (``cell``, ``input_size``, ``num_layers``, ``prefix``), told by its
    attributes: this module sits below the models and cannot import them."""
    return all(hasattr(obj, key) for key in ("cell", "input_size", "num_layers", "prefix"))


def _stacks(obj: Any, depth: int = 0) -> list[Any]:
    """The recurrent stacks a model holds (as attributes, or in tuples/lists of them)."""
    if _is_stack(obj):
        return [obj]
    if depth >= 3:
        return []
    found: list[Any] = []
    children = obj if isinstance(obj, tuple | list) else getattr(obj, "__dict__", {}).values()
    for child in children:
        if isinstance(child, tuple | list) or hasattr(child, "__dict__"):
            found += _stacks(child, depth + 1)
    return found


def stack_values(stack: Any) -> int:
    """Parameters of a recurrent stack: its first layer's plus ``num_layers - 1`` times an
    upper layer's (counted once, so a million layers take no longer than two)."""
    first = _values(stack.cell.param_shapes(stack.input_size))
    upper = stack.num_layers - 1
    hidden = getattr(stack, "hidden_size", stack.cell.hidden_size)
    return first + (upper * _values(stack.cell.param_shapes(hidden)) if upper > 0 else 0)


def model_values(model: Any) -> int:
    """Parameters of a built model that has none allocated yet (its ``param_shapes`` names
    them): every stack counted by :func:`stack_values`, the rest (embedding, heads, attention)
    from ``param_shapes`` of a copy whose stacks have one layer each."""
    import copy

    stacks = _stacks(model)
    if not stacks or all(s.num_layers <= 1 for s in stacks):
        return _values(model.param_shapes())
    shallow = copy.deepcopy(model)
    flat = _stacks(shallow)
    for stack in flat:
        stack.num_layers = 1
    rest = _values(shallow.param_shapes()) - sum(stack_values(s) for s in flat)
    return rest + sum(stack_values(s) for s in stacks)


__all__ = ["SKIP_ENV", "available_memory", "check_buffers", "forward_bytes", "gib",
           "model_values", "shortfall", "stack_values"]
