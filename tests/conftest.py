"""Shared test setup: where the data lives, a throw-away download cache, and ``needs_data``.

Tests that read a dataset file carry ``@needs_data("dinos.txt")`` (or ``pytestmark = ...``): on
a clone without the data files and without network they skip and say which file is missing and
where it was looked for, instead of failing.  The file is looked for the way rnnlab looks for it
(``RNNLAB_DATA_DIR``, the cache, the pinned download), once per session.  With
``RNNLAB_REQUIRE_DATA=1`` (CI sets it) a missing file fails the test instead, with the same
reason: there, a skipped test would hide a broken data setup.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Set at import time so that everything (including subprocesses) sees the course data files.
if (REPO.parent / "shared" / "data").is_dir():
    os.environ.setdefault("RNNLAB_DATA_DIR", str(REPO.parent / "shared" / "data"))

# A tracked job leaves a spare MLflow helper waiting for the next one (for minutes): tests do not,
# except the tests of spare helpers themselves, which use their own temporary folder.
os.environ["RNNLAB_SPARE_HELPER"] = "0"

# Never read or fill the user's real ~/.cache/rnnlab from the tests; set at import time so that
# the data check below (which may download a file) and the tests share one cache.  Tests also
# import this file as tests.conftest: that second import reuses the cache.  Each pytest-xdist
# worker gets its own (tests put files into the cache and take them out again), made by the
# first import in that worker: the worker inherits the controller's variables.
_OWNER = os.environ.get("PYTEST_XDIST_WORKER", "main")
if os.environ.get("RNNLAB_TEST_CACHE_OWNER") != _OWNER or "RNNLAB_TEST_CACHE_DIR" not in os.environ:
    os.environ["RNNLAB_TEST_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnlab-test-cache-")
    os.environ["RNNLAB_TEST_CACHE_OWNER"] = _OWNER
_CACHE = os.environ["RNNLAB_CACHE_DIR"] = os.environ["RNNLAB_TEST_CACHE_DIR"]
_available: dict[tuple[str, str | None, str | None], str | None] = {}
REQUIRE_DATA_ENV = "RNNLAB_REQUIRE_DATA"


def needs_data(*filenames: str) -> pytest.MarkDecorator:
    """Mark a test that reads these dataset files (e.g. ``"dinos.txt"``)."""
    return pytest.mark.needs_data(*filenames)


def missing_data(filename: str) -> str | None:
    """Why ``filename`` cannot be had (the one-line error rnnlab gives), or None if it can.

    A missing file is remembered for the session, per data directory and cache (a test may
    point them elsewhere, at an edited or absent copy); a found one is looked for again each
    time (a test may have put a copy in the download cache that a later test no longer has)."""
    key = (filename, os.environ.get("RNNLAB_DATA_DIR"), os.environ.get("RNNLAB_CACHE_DIR"))
    if _available.get(key) is not None:
        return _available[key]
    from framework.errors import RnnlabError
    from framework.plugins import load_plugins
    from framework.registry import DATASETS

    load_plugins()
    sources = [s for n in DATASETS.names() for s in (getattr(DATASETS.get(n), "source", None),
                                                     *getattr(DATASETS.get(n), "sources", ()))]
    source = next((s for s in sources if s is not None and s.filename == filename), None)
    if source is None:
        raise ValueError(f"no registered dataset has the file {filename!r}")
    from framework.data.files.fetch import locate

    try:
        locate(source)
        _available[key] = None
    except RnnlabError as exc:
        _available[key] = str(exc)
    return _available[key]


def require_data(*filenames: str) -> None:
    """Skip the calling test (or fixture) when a dataset file cannot be had; fail it instead
    when ``RNNLAB_REQUIRE_DATA`` is set (CI)."""
    for filename in filenames:
        reason = missing_data(filename)
        if reason is None:
            continue
        skip_or_fail(f"needs {filename}: {reason}")


def skip_or_fail(message: str) -> None:
    """Skip the calling test for a missing data file, or fail it when ``RNNLAB_REQUIRE_DATA``
    is set (CI)."""
    if os.environ.get(REQUIRE_DATA_ENV, "") not in ("", "0"):
        pytest.fail(f"{message} ({REQUIRE_DATA_ENV} is set)", pytrace=False)
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_data(*files): the test reads these dataset files; "
                                       "it skips when they cannot be found or downloaded")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs_data"):
        require_data(*marker.args)


# The worst relative error each gradient check saw, gathered from every pytest-xdist worker.
_gradcheck_worst: dict[str, float] = {}


def _worst_here() -> dict[str, float]:
    import sys

    helpers = sys.modules.get("tests.helpers")  # not imported: no gradient check ran here
    return dict(getattr(helpers, "GRADCHECK_WORST", None) or {})


def _merge_worst(worst: dict[str, float]) -> None:
    for label, err in worst.items():
        _gradcheck_worst[label] = max(_gradcheck_worst.get(label, 0.0), err)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its figures go to the controller
        workeroutput["gradcheck_worst"] = _worst_here()
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """An xdist worker finished: keep its gradient-check figures for the summary."""
    _merge_worst(getattr(node, "workeroutput", {}).get("gradcheck_worst", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The worst relative error each gradient check saw (a report, not a test: the checks
    themselves assert the tolerance)."""
    _merge_worst(_worst_here())
    if not _gradcheck_worst:
        return
    terminalreporter.section("gradient checks: worst relative error")
    for label, err in sorted(_gradcheck_worst.items()):
        terminalreporter.write_line(f"{label}: {err:.2e}")


def dataset_files(name: str) -> list[str]:
    """The data files a registered dataset reads by default (none for one of the user's files)."""
    from framework.plugins import load_folder
    from framework.registry import DATASETS

    load_folder(REPO / "datasets")
    dataset = DATASETS.get(name)
    sources = (getattr(dataset, "source", None), *getattr(dataset, "sources", ()))
    return [s.filename for s in sources if s is not None]


def require_run_data(overrides: list[str]) -> None:
    """Skip the calling test (or fail it in CI) when the dataset a run with these overrides
    reads by default (``dataset=...``, else the default ``dinos``) cannot be had."""
    names = [o.split("=", 1)[1] for o in overrides if o.startswith("dataset=")]
    if not any(o.startswith("dataset.path=") for o in overrides):
        require_data(*dataset_files(names[-1] if names else "dinos"))


def load_dataset(name: str, **options):
    """Build a registered dataset from its options and load its corpus (skips the test when its
    default file is needed and cannot be had)."""
    from framework.plugins import load_folder
    from framework.registry import DATASETS

    load_folder(REPO / "datasets")
    if not options.get("path"):
        require_data(*dataset_files(name))
    return DATASETS.build({"name": name, **options}).load()


@pytest.fixture(scope="session")
def dinos():
    """The course's dinosaur names, all 1536 of them in file order (val_fraction 0)."""
    return load_dataset("dinos", val_fraction=0.0)
