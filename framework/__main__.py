"""``python -m framework``: train (and sample, and log) one configuration, or sweep with ``-m``."""

from framework.cli.train import main

if __name__ == "__main__":
    main()
