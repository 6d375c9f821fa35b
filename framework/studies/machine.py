"""Which machine a benchmark ran on: the CPU model and the BLAS library, kernel and threads."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), with the number of CPUs this process has."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                name = value.strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 0
    return f"{name}, {count} CPU(s)" if count else name


def blas_report() -> str:
    """Which BLAS kernel runs, with how many threads (and env overrides that change it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (install threadpoolctl: pip install rnnlab[bench])"
    libs = [f"{i['internal_api']} {i['version']} kernel {i.get('architecture', '?')}, "
            f"{i['num_threads']} thread(s)" for i in threadpool_info() if i["user_api"] == "blas"]
    env = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                            "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
           if k in os.environ]
    return ("; ".join(libs) or "none found") + (f" (env: {', '.join(env)})" if env else "")


def machine_line() -> str:
    """``CPU: ...; BLAS: ...``, the line a benchmark table starts with."""
    return f"CPU: {cpu_model()}; BLAS: {blas_report()}"


__all__ = ["blas_report", "cpu_model", "machine_line"]
