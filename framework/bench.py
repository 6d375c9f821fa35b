"""``python -m framework.bench``: entry point of framework/studies/bench.py."""

from framework.studies.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
