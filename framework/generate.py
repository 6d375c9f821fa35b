"""``python -m framework.generate``: entry point of framework/cli/generate.py."""

from framework.cli.generate import main

if __name__ == "__main__":
    raise SystemExit(main())
