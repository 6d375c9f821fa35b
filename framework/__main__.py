"""``python -m framework``: train (and sample, and log) one configuration, or sweep with ``-m``."""

from framework.app import main
from framework.process_exit import exit_after


def entry() -> None:
    """The process entry point (``python -m framework``, the ``rnnlab`` command)."""
    exit_after(main)


if __name__ == "__main__":
    entry()
