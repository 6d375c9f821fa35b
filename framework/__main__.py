"""``python -m framework``: train (and sample, and log) one configuration, or sweep with ``-m``."""

from framework.cli.process_exit import exit_after
from framework.cli.train import main


def entry() -> None:
    """The process entry point (``python -m framework``, the ``rnnlab`` command)."""
    exit_after(main)


if __name__ == "__main__":
    entry()
