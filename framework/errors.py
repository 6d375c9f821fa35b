"""User-facing errors.

Anything raised as an ``RnnlabError`` is a problem with the user's input or environment, not a bug:
the command-line entry points print its message as one line (no traceback) and exit non-zero.
Messages name the problem and the fix.
"""

from __future__ import annotations


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
