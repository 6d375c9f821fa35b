"""Ending the command-line process without the interpreter's slow teardown of every module.

Once MLflow is imported (with pandas, SQLAlchemy, pydantic models, ...), the interpreter's final
clean-up (clearing every module and collecting their objects) takes about 1 s of CPU, after all
the work is done. :func:`exit_after` does what a normal exit does first (joins non-daemon threads,
runs the threading and ``atexit`` hooks: logging is flushed and closed, the sweep's parent run is
ended, temporary directories are removed), flushes stdout and stderr, and then ends the process
with ``os._exit``. Under a debugger, profiler or coverage tracer (which write their results at
interpreter exit), or with ``RNNLAB_DEBUG`` set, the exit is the normal one.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn


def _exit_status(code: Any) -> int:
    """What the interpreter makes of ``SystemExit(code)``: None is 0, text is printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _normal_exit_wanted() -> bool:
    return (sys.gettrace() is not None or sys.getprofile() is not None
            or os.environ.get("RNNLAB_DEBUG", "") not in ("", "0"))


def exit_after(main: Callable[[], object]) -> NoReturn:
    """Run ``main()`` as the process's entry point, then exit with its status, quickly."""
    try:
        main()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    if _normal_exit_wanted():
        sys.exit(code)
    status = _exit_status(code)
    # The interpreter's own order at exit: threads first (and their hooks, e.g. executors'
    # shutdown), then the atexit functions.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): what the interpreter reports
            status = status or 120
    os._exit(status)


__all__ = ["exit_after"]
