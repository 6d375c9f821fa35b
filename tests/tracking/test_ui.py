"""The MLflow UI in a real (headless) Chromium: a sweep's runs table and compare page.

Renders the pages the sweep prints links to (see docs/sweeps.md, "How to open and compare
runs"), checks from the rendered DOM that the child runs and their val_loss are shown, and saves
the compare page and the runs table as PNGs: into $RNNLAB_SCREENSHOT_DIR when set (the README's
pictures are refreshed with RNNLAB_SCREENSHOT_DIR=docs/images), else into the test's tmp dir.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from framework.sweeps.nested_runs import ui_links
from tests.tracking.test_server import check_sweep_runs, mlflow_server, run_sweep

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--disable-quic", "--hide-scrollbars"]
WINDOW = "--window-size=1680,1100"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium installed; run .ci/slow-deps (apt-get install chromium)")


def browse(url: str, *extra: str, budget_ms: int = 30000,
           window: str = WINDOW) -> subprocess.CompletedProcess:
    """One headless Chromium run on a fresh profile; virtual time lets the SPA load its data."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-chromium-") as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               f"--virtual-time-budget={budget_ms}", window, *extra, url],
                              capture_output=True, text=True, timeout=180)


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def rendered_text(url: str) -> str:
    proc = browse(url, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return visible_text(proc.stdout)


def screenshot(url: str, path: Path, window: str = WINDOW) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = browse(url, f"--screenshot={path}", window=window)
    assert proc.returncode == 0 and path.is_file(), proc.stderr[-2000:]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


@pytest.mark.slow
def test_sweep_runs_table_and_compare_page_in_chromium(tmp_path):
    chromium()
    with mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'server.db'}") as url:
        jobs = tmp_path / "jobs"
        jobs.mkdir()
        # A few evaluations per run, so the compare page has curves to show.
        run_sweep(jobs, url, "ui", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                    "cell=rnn,lstm,gru", "train.steps=20",
                                    "train.eval_every=5", "train.log_every=5"])
        _, parent, children = check_sweep_runs(url, "ui", ["rnn", "lstm", "gru"])
        names = [c.info.run_name for c in children]
        links = ui_links(url, parent.info.experiment_id, parent.data.tags.get("rnnlab.ui_view"),
                         [c.info.run_id for c in children])

        runs_text = rendered_text(links["runs"])
        for name in names:
            assert name in runs_text, (name, runs_text[:3000])
        # The sweep's shared view shows the metric as a column with each child's value.
        assert "val_loss" in runs_text
        for child in children:
            assert f"{child.data.metrics['val_loss']}"[:6] in runs_text
            # ...and exactly enough to tell the children apart, in the column beside it.
            assert child.data.tags["exact val_loss"] in runs_text
        assert "exact val_loss" in runs_text

        compare_text = rendered_text(links["compare"])
        assert f"Comparing {len(children)} Runs" in compare_text, compare_text[:3000]
        for name in names:
            assert name in compare_text
        assert "val_loss" in compare_text and "cell.name" in compare_text

        # Tall enough for run details, the params table and the (scrolling) metrics table.
        images = Path(os.environ.get("RNNLAB_SCREENSHOT_DIR") or tmp_path)
        images.mkdir(parents=True, exist_ok=True)
        screenshot(links["compare"], images / "mlflow_compare.png", "--window-size=1680,2050")
        screenshot(links["runs"], images / "mlflow_runs.png")
        for name in ("mlflow_compare.png", "mlflow_runs.png"):
            assert (images / name).stat().st_size > 10_000, name  # a real page, not a blank
