"""User-facing errors.

Anything raised as an ``RnnlabError`` is a problem with the user's input or environment, not a bug:
the command-line entry points print its message as one line (no traceback) and exit non-zero.
Messages name the problem and the fix.
"""


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


class DivergenceError(RnnlabError):
    """Training produced NaN or Inf; the message says where and what to try."""

    exit_code = 3
