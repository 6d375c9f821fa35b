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


def load_dataset(name: str, **options):
    """Build a registered dataset from its options and load its corpus."""
    from framework.plugins import load_folder
    from framework.registry import DATASETS

    load_folder(REPO / "datasets")
    return DATASETS.build({"name": name, **options}).load()


@pytest.fixture(scope="session")
def dinos():
    """The course's dinosaur names, all 1536 of them in file order (val_fraction 0)."""
    return load_dataset("dinos", val_fraction=0.0)
