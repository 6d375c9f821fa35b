"""How every command reports a problem: one line on stderr and an exit status, never a traceback.

The line itself is :func:`framework.errors.print_error` (``RNNLAB_DEBUG=1`` or Hydra's
``HYDRA_FULL_ERROR=1`` prints the traceback as well).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from framework.errors import RnnlabError, debug_mode, print_error

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


__all__ = ["ArgumentParser", "debug_mode", "int_at_least", "print_error", "run_command"]
