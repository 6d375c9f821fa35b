"""rnnlab's datasets/ plugin folder must neither shadow nor be shadowed by Hugging Face `datasets`.

A stand-in top-level package ``datasets`` (like the one ``pip install datasets`` provides) is put
first on PYTHONPATH of a fresh interpreter; loading rnnlab's plugins must still register rnnlab's
datasets, and ``import datasets`` must still give the stand-in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_with_fake_hf(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "site"
    (fake / "datasets").mkdir(parents=True)
    (fake / "datasets" / "__init__.py").write_text('MARKER = "hf"\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(REPO)]))
    # Run outside the repo: `python -c` puts the cwd first on sys.path, and the repo's datasets/
    # folder must be reachable only the way an installed rnnlab sees it (after the stand-in).
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


CHECK = """
import datasets
assert datasets.MARKER == "hf", datasets
import inspect
from pathlib import Path
from framework import ROOT
from framework.registry import DATASETS
# Every file of rnnlab's datasets/ folder registered its dataset, loaded from that folder.
files = {p.resolve() for p in (ROOT / "datasets").glob("[!_]*.py")}
loaded = {Path(inspect.getsourcefile(DATASETS.get(n))).resolve() for n in DATASETS}
assert files and files <= loaded, (files, loaded)
assert all(DATASETS.entry(n).origin.startswith("rnnlab_plugins.datasets.") for n in DATASETS)
print("ok")
"""


def test_plugin_folder_does_not_shadow_hf_datasets(tmp_path):
    code = ("from pathlib import Path\nfrom framework.plugins import load_folder, ROOT\n"
            "load_folder(ROOT / 'datasets')\n" + CHECK)
    result = run_with_fake_hf(tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_load_plugins_does_not_shadow_hf_datasets(tmp_path):
    code = "import framework.plugins\nframework.plugins.load_plugins()\n" + CHECK
    result = run_with_fake_hf(tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
