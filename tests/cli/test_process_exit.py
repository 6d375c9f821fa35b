"""The command-line exit: everything a normal exit does first still happens, then ``os._exit``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from framework.cli.process_exit import exit_after

    class Teardown:
        def __del__(self):  # runs only in the interpreter's module teardown
            print("module teardown", flush=True)

    keep = Teardown()
    atexit.register(print, "atexit ran")
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread joined"))).start()
    print("no newline", end="")
    exit_after(lambda: {exit})
    """
)


def run(exit_expr: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    full = {k: v for k, v in os.environ.items() if k != "RNNLAB_DEBUG"}
    return subprocess.run([sys.executable, "-c", SCRIPT.replace("{exit}", exit_expr)],
                          capture_output=True, text=True, timeout=60, env={**full, **(env or {})})


@pytest.mark.parametrize(("expr", "status"), [("None", 0), ("sys.exit(3)", 3),
                                              ("sys.exit(None)", 0)])
def test_fast_exit_keeps_status_output_threads_and_atexit(expr, status):
    proc = run(expr)
    assert proc.returncode == status, proc.stderr
    assert proc.stdout.splitlines() == ["no newlinethread joined", "atexit ran"]
    assert "module teardown" not in proc.stdout  # the skipped part


def test_text_exit_is_printed_with_status_1():
    proc = run("sys.exit('rnnlab: bye')")
    assert proc.returncode == 1 and proc.stderr.strip() == "rnnlab: bye"


def test_debug_mode_exits_normally():
    proc = run("sys.exit(4)", env={"RNNLAB_DEBUG": "1"})
    assert proc.returncode == 4
    assert proc.stdout.splitlines()[-1] == "module teardown"
