"""Shared test setup: where the data lives, and a throw-away download cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Set at import time so that everything (including subprocesses) sees the course data files.
os.environ.setdefault("RNNLAB_DATA_DIR", str(REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Never read or fill the user's real ~/.cache/rnnlab from the tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNLAB_CACHE_DIR", str(tmp_path_factory.mktemp("rnnlab-cache")))
        yield
