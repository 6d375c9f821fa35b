"""``python -m framework.vanishing``: entry point of framework/studies/vanishing.py."""

from framework.studies.vanishing import main

if __name__ == "__main__":
    raise SystemExit(main())
