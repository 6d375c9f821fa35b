"""``python -m framework.predict``: entry point of framework/cli/predict.py."""

from framework.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
