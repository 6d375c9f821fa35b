"""A plugin that exits, raises or hangs while it imports is reported by file (or entry point) in
one line, and the command fails: it never ends the command as if it had succeeded."""

from __future__ import annotations

import pytest

from framework import plugins
from framework.errors import PluginError
from tests.helpers import cli


def _folder(tmp_path, body: str):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "bad.py").write_text(body)
    return folder


def test_a_plugin_that_exits_while_importing_is_an_error(tmp_path):
    folder = _folder(tmp_path, "import sys\nsys.exit(0)\n")
    with pytest.raises(PluginError) as info:
        plugins.load_folder(folder)
    assert str(info.value) == (f"plugin file {folder / 'bad.py'} called sys.exit(0) while "
                               f"importing; a plugin must not end the command")


@pytest.mark.timeout(0)  # pytest-timeout's own alarm would take the timer the loader uses
def test_a_plugin_that_hangs_while_importing_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(plugins, "LOAD_SECONDS", 0.3)
    folder = _folder(tmp_path, "import time\ntime.sleep(5)\n")
    with pytest.raises(PluginError, match=r"took over 0.3 s to import and was stopped"):
        plugins.load_folder(folder)


def test_the_command_fails_on_an_exiting_plugin(tmp_path):
    folder = _folder(tmp_path, "raise SystemExit(0)\n")
    proc = cli("framework", ["--cfg", "job"], tmp_path, timeout=60,
               env={"RNNLAB_PLUGIN_PATH": str(folder)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"rnnlab: error: plugin file {folder / 'bad.py'} called "
                                   f"sys.exit(0) while importing; a plugin must not end the "
                                   f"command")
