"""Entry points are scanned once per command, and again when a package is installed meanwhile
(a new dist-info folder on ``sys.path``); not at all when no installed package declares an
``rnnlab.*`` group."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
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


def _dist_info(site, name: str, entry_points: str) -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_packages_are_scanned_only_when_one_declares_an_rnnlab_group(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _dist_info(site, "tool", "[console_scripts]\nrnnlab-tool = tool:main\n")
    monkeypatch.setattr(sys, "path", [str(site), str(tmp_path / "absent")])
    monkeypatch.setattr(sys, "meta_path", [importlib.machinery.PathFinder])  # Python's own only
    assert not plugins._may_declare_entry_points()
    _dist_info(site, "cellpack", "[rnnlab.cells]\nmine = cellpack:Mine\n")
    assert plugins._may_declare_entry_points()


def test_what_the_quick_check_cannot_read_counts_as_declared(tmp_path, monkeypatch):
    archive = tmp_path / "packages.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip file
    monkeypatch.setattr(sys, "meta_path", [importlib.machinery.PathFinder])
    monkeypatch.setattr(sys, "path", [str(archive)])
    assert plugins._may_declare_entry_points()
    monkeypatch.setattr(sys, "path", [str(tmp_path / "old.egg")])
    assert plugins._may_declare_entry_points()


def test_another_distribution_finder_counts_as_declared(monkeypatch):
    class Finder:
        @staticmethod
        def find_distributions(context=None):
            return iter(())

    monkeypatch.setattr(sys, "path", [])
    monkeypatch.setattr(sys, "meta_path", [importlib.machinery.PathFinder])
    assert not plugins._may_declare_entry_points()
    monkeypatch.setattr(sys, "meta_path", [importlib.machinery.PathFinder, Finder])
    assert plugins._may_declare_entry_points()


def test_a_command_without_plugin_packages_does_not_import_the_metadata_reader(tmp_path):
    code = ("import sys\nfrom framework.registry import CELLS\nassert 'rnn' in CELLS\n"
            "print('importlib.metadata' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
