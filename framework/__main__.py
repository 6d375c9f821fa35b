"""``python -m framework``: train (and sample, and log) one configuration, or sweep with ``-m``."""

from framework.app import main

if __name__ == "__main__":
    main()
