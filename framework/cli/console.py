"""How every command reports a problem: one line on stderr and an exit status, never a traceback.

The line itself is :func:`framework.errors.print_error` (``RNNLAB_DEBUG=1`` or Hydra's
``HYDRA_FULL_ERROR=1`` prints the traceback as well).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from framework.errors import RnnlabError, StorageError, debug_mode, print_error

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def run_command(body: Callable[[], Any]) -> int:
    """Run a command's body; turn rnnlab errors, Ctrl-C and a closed pipe into exit statuses."""
    try:
        result = body()
    except RnnlabError as exc:
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug_mode():
            raise
        print("rnnlab: interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second BrokenPipeError at interpreter exit
        return 0
    return result if isinstance(result, int) else 0


def file_error(exc: OSError) -> StorageError:
    """A file system error a command's job met (a file it could not read or write), as one line
    naming the path and the cause: ``cannot use /proc/self/mem: Input/output error [EIO]``."""
    return StorageError.from_os_error("use", exc.filename or "a file", exc,
                                      "check that path and the setting that names it")


def command_name() -> str:
    """How the user started this command: ``python -m framework.generate``, ``rnnlab``, ..."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", "") or ""
    if name.startswith("framework"):
        return "python -m " + name.removesuffix(".__main__")
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "rnnlab"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``rnnlab: error:`` line (exit 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{self.prog}: {message} (--help lists the options)")
        sys.exit(2)


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


__all__ = ["ArgumentParser", "debug_mode", "file_error", "int_at_least", "print_error",
           "run_command"]


class _Tee:
    """A text stream that also appends what it is given to a log file; progress-bar redraws
    (text with a carriage return) stay on the console only."""

    def __init__(self, stream: Any, log: Any) -> None:
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        if "\r" not in text:
            try:
                self._log.write(text)
                self._log.flush()
            except (OSError, ValueError):  # a full disk or a closed file: the console goes on
                pass
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def console_copied_to(path: Path) -> Iterator[None]:
    """Copy what the command prints (stdout and stderr) into ``path`` while the block runs, so
    a run's folder keeps its console output (``train.log``)."""
    try:
        log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError:
        yield  # an unwritable folder fails the run elsewhere, with its own message
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(saved[0], log), _Tee(saved[1], log)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        log.close()
