"""``python -m framework.coursebench``: entry point of framework/studies/coursebench.py."""

from framework.studies.coursebench import main

if __name__ == "__main__":
    raise SystemExit(main())
