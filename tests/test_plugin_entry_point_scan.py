"""Entry points are scanned once per command, and again when a package is installed meanwhile
(a new dist-info folder on ``sys.path``)."""

from __future__ import annotations

import os
import sys

from framework import plugins


def _names(group: str) -> list[str]:
    return [ep.name for ep in plugins.installed_entry_points().select(group=group)]


def test_the_scan_is_reused_until_a_package_appears_on_the_path(tmp_path, monkeypatch):
    os.utime(tmp_path, ns=(0, 0))  # the folder's next change is seen whatever the clock's tick
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    first = plugins.installed_entry_points()
    assert plugins.installed_entry_points() is first  # nothing changed: no second scan
    info = tmp_path / "rnnlab_scan_probe-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rnnlab-scan-probe\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[rnnlab.scan_probe]\nprobe = probe_module:Probe\n")
    assert _names("rnnlab.scan_probe") == ["probe"]  # the new package is seen
    monkeypatch.undo()
    assert _names("rnnlab.scan_probe") == []  # and forgotten once it is off the path again
