"""``python -m framework``: train (and sample, and log) one configuration, or sweep with ``-m``."""

import sys

from framework.tracking.tracker_process import prestart


def entry() -> None:
    """The process entry point (``python -m framework``, the ``rnnlab`` command)."""
    prestart(sys.argv[1:])  # MLflow's imports start in a helper before Hydra's work begins
    from framework.cli.process_exit import exit_after
    from framework.cli.train import main

    exit_after(main)


if __name__ == "__main__":
    entry()
