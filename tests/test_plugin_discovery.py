"""Plugin discovery: a file dropped in a plugin folder, an installed package's entry points, and
shell completion of the plugin names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from framework.plugins import load_folder, load_plugins
from framework.registry import CELLS
from tests.conftest import needs_data
from tests.helpers import QUICK, cli

DROP_IN_CELL = '''
from dataclasses import dataclass

from framework.nn.cell import check_cell_config
from framework.registry import CELLS

RNN = CELLS.get("rnn")  # reuse the tanh cell's math under a new name


@dataclass
class {cls}Config:
    name: str = "{name}"
    hidden_size: int = 8
    init: str = "xavier"

    def __post_init__(self) -> None:
        check_cell_config(self.hidden_size, self.init)


@CELLS.register("{name}", schema={cls}Config)
class {cls}(RNN):
    name = "{name}"
'''


def test_a_file_dropped_in_a_plugin_folder_registers_itself(tmp_path):
    load_plugins()
    folder = tmp_path / "cells"
    folder.mkdir()
    (folder / "dropin.py").write_text(DROP_IN_CELL.format(name="dropin", cls="DropIn"))
    (folder / "_private.py").write_text("raise RuntimeError('underscore files are skipped')\n")
    loaded = load_folder(folder)
    assert loaded == ["rnnlab_plugins.cells.dropin"]
    assert "dropin" in CELLS
    cell = CELLS.build({"name": "dropin", "hidden_size": 4})
    assert cell.hidden_size == 4


def _install_plugin_package(site: Path) -> None:
    """What `pip install` leaves behind: the package and its dist-info with entry points."""
    pkg = site / "rnnlab_toy_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(DROP_IN_CELL.format(name="toyrnn", cls="ToyRNN"))
    info = site / "rnnlab_toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rnnlab-toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rnnlab.cells]\ntoyrnn = rnnlab_toy_plugin:ToyRNN\n")
    (info / "RECORD").write_text("")


@needs_data("dinos.txt")
def test_an_installed_package_plugs_in_a_cell_by_entry_point_and_trains(tmp_path):
    site = tmp_path / "site"
    _install_plugin_package(site)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = cli("framework", [*QUICK, "cell=toyrnn", "train.steps=3"], tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "done: 3 steps" in proc.stdout
    # Without the package the name is unknown, with the usual one-line error.
    proc = cli("framework", [*QUICK, "cell=toyrnn"], tmp_path)
    assert proc.returncode == 2 and "unknown cell 'toyrnn'" in proc.stderr


def test_shell_completion_offers_plugin_names(tmp_path):
    rnnlab = Path(sys.executable).parent / "rnnlab"
    assert rnnlab.is_file(), "the `rnnlab` command is installed with the project"
    env = {**os.environ, "COMP_LINE": "rnnlab cell="}
    proc = subprocess.run([str(rnnlab), "-sc", "query=bash"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cell=gru", "cell=lstm", "cell=rnn"]
    install = subprocess.run([str(rnnlab), "-sc", "install=bash"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert "complete -o nospace -o default -F hydra_bash_completion rnnlab" in install.stdout
