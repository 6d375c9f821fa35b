"""``python -m framework.compare``: entry point of framework/cli/compare.py."""

from framework.cli.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
