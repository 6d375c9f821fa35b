"""``python -m framework``: train (and sample, and log) one configuration, or sweep with ``-m``."""

import sys


def entry() -> None:
    """The process entry point (``python -m framework``, the ``rnnlab`` command)."""
    from framework.tracking.prestart import spawn_helper

    # MLflow's imports start in a helper before anything else is imported here.
    helper = spawn_helper(sys.argv[1:])
    from framework.tracking.tracker_process import adopt_prestarted

    adopt_prestarted(helper)
    from framework.cli.process_exit import exit_after
    from framework.cli.train import main

    exit_after(main)


if __name__ == "__main__":
    entry()
