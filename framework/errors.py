"""User-facing errors, and how one is shown: one line on stderr.

Anything raised as an ``RnnlabError`` is a problem with the user's input or environment, not a bug:
the command-line entry points print its message as one line (:func:`print_error`, no traceback)
and exit non-zero. Messages name the problem and the fix. ``RNNLAB_DEBUG=1`` (or Hydra's
``HYDRA_FULL_ERROR=1``) prints the traceback as well.
"""

from __future__ import annotations

import os
import sys
import traceback

DEBUG_ENV = ("RNNLAB_DEBUG", "HYDRA_FULL_ERROR")
# Set while the Hydra app forces HYDRA_FULL_ERROR (inherited by sweep workers): not the user's wish.
FORCED_FULL_ERROR = "RNNLAB_FORCED_HYDRA_FULL_ERROR"


class RnnlabError(Exception):
    """Base class of every error that is reported to the user as one line."""

    exit_code = 2


class ConfigError(RnnlabError):
    """A configuration value is missing, of the wrong type or out of range."""


class PluginError(RnnlabError):
    """A plugin name is unknown, registered twice, or its file failed to load."""


class DataError(RnnlabError):
    """A dataset file is missing, unreadable, empty, not text, or failed its checksum."""


class CheckpointError(RnnlabError):
    """A checkpoint is missing, truncated, not an rnnlab checkpoint, or does not fit the model."""


class TrackingError(RnnlabError):
    """The MLflow tracking store is malformed or unreachable."""


class TrackingIncomplete(TrackingError):
    """Training ended well (its checkpoints are written) but the tracking store did not record
    all of the run: a distinct exit status, so that scripts can tell it from a failed run."""

    exit_code = 4


class StorageError(RnnlabError):
    """A file or folder cannot be written: the disk is full, read-only, or not ours to write."""

    @classmethod
    def from_os_error(cls, action: str, path: object, exc: OSError, fix: str) -> StorageError:
        """``cannot <action> <path>: <cause> [ENOSPC]; <fix>`` from the OSError that stopped it."""
        import errno

        code = errno.errorcode.get(exc.errno or 0)
        cause = exc.strerror or str(exc) or type(exc).__name__
        return cls(f"cannot {action} {path}: {cause}{f' [{code}]' if code else ''}; {fix}")


class DivergenceError(RnnlabError):
    """Training produced NaN or Inf; the message says where and what to try."""

    exit_code = 3


def debug_mode() -> bool:
    """RNNLAB_DEBUG=1 or HYDRA_FULL_ERROR=1: show tracebacks instead of one-line errors."""
    names = DEBUG_ENV[:1] if os.environ.get(FORCED_FULL_ERROR) else DEBUG_ENV
    return any(os.environ.get(name, "") not in ("", "0") for name in names)


def print_error(exc: BaseException | str) -> None:
    """The one-line report of an error (after its traceback in debug mode)."""
    if isinstance(exc, BaseException) and debug_mode():
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    # One line even when the message quotes user text with a line break in it.
    text = str(exc).replace("\r", "\\r").replace("\n", "\\n")
    print(f"rnnlab: error: {text}", file=sys.stderr, flush=True)
