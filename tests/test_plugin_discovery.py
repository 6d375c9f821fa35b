"""Plugin discovery: files dropped in a plugin folder or a folder of RNNLAB_PLUGIN_PATH, installed
packages' entry points, files put where nothing loads them, and shell completion of the names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from framework.cli import groups
from framework.cli.overrides import unknown_plugin
from framework.errors import ConfigError, PluginError
from framework.plugins import PATH_ENV, load_folder, load_plugins, package_name
from framework.registry import ALL, CELLS, OPTIMIZERS, SAMPLERS
from tests.conftest import needs_data
from tests.helpers import QUICK, cli, isolated_registries, plugin_path, run_cli

DROP_IN_CELL = '''
from framework.registry import CELLS

RNN = CELLS.get("rnn")  # reuse the tanh cell's math under a new name


@CELLS.register("{name}")
class {cls}(RNN):
    pass
'''

# A sampler in one file, with no YAML anywhere: picks the most likely index above a floor.
FLOOR_SAMPLER = '''
from dataclasses import dataclass

import numpy as np

from framework.nn.samplers import Sampler
from framework.registry import SAMPLERS


@dataclass
class FloorConfig:
    floor: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {{self.floor}}")


@SAMPLERS.register("{name}", schema=FloorConfig)
class Floor(Sampler):
    def __call__(self, logits, *, rng, step, sample_index):
        return int(np.argmax(logits))
'''

# One file registering into every kind of registry.
EVERY_KIND = """
from dataclasses import dataclass

from framework.data.corpora.text import TextDataset
from framework.data.feeds.text import StreamFeed
from framework.data.tokenizers.chars import CharsTokenizer
from framework.nn.attention import Additive
from framework.nn.clip import NoClip
from framework.nn.decoding import Beam
from framework.nn.optimizers import SGD
from framework.nn.samplers import Greedy
from framework.nn.schedules import Constant
from framework.registry import (ATTENTIONS, CELLS, CLIPS, DATASETS, DECODERS, FEEDS, OPTIMIZERS,
                                SAMPLERS, SCHEDULES, TASKS, TOKENIZERS)


@dataclass
class TextConfig:
    path: str | None = None
    val_fraction: float = 0.1


CELLS.register("k_cell")(type("KCell", (CELLS.get("rnn"),), {}))
DATASETS.register("k_dataset", schema=TextConfig)(type("KData", (TextDataset,), {}))
CLIPS.register("k_clip")(type("KClip", (NoClip,), {}))
SAMPLERS.register("k_sampler")(type("KSampler", (Greedy,), {}))
OPTIMIZERS.register("k_optimizer")(type("KOpt", (SGD,), {}))  # SGD's options, its own name
FEEDS.register("k_feed")(type("KFeed", (StreamFeed,), {}))
SCHEDULES.register("k_schedule")(type("KSchedule", (Constant,), {}))
TASKS.register("k_task")(lambda cfg: cfg)
TOKENIZERS.register("k_tokenizer")(type("KTokenizer", (CharsTokenizer,), {}))
ATTENTIONS.register("k_attention")(type("KAttention", (Additive,), {}))
DECODERS.register("k_decoder")(type("KDecoder", (Beam,), {}))
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_a_file_dropped_in_a_plugin_folder_registers_itself(tmp_path):
    folder = tmp_path / "cells"
    write(folder, "dropin.py", DROP_IN_CELL.format(name="dropin", cls="DropIn"))
    write(folder, "_private.py", "raise RuntimeError('underscore files are skipped')\n")
    with isolated_registries():
        loaded = load_folder(folder)
        assert loaded == [f"{package_name(folder)}.dropin"]
        assert "dropin" in CELLS and CELLS.get("dropin").name == "dropin"
        cell = CELLS.build({"name": "dropin", "hidden_size": 4})
        assert cell.hidden_size == 4 and cell.name == "dropin"
    assert "dropin" not in CELLS


def test_plugin_path_folders_load_under_private_names_and_may_register_anything(
        tmp_path, monkeypatch):
    first, second = tmp_path / "a" / "plugins", tmp_path / "b" / "plugins"
    write(first, "every_kind.py", EVERY_KIND)
    # Files named like installed packages do not shadow them; same-named folders do not collide.
    write(first, "datasets.py", "")
    write(second, "numpy.py", "")
    monkeypatch.setenv(PATH_ENV, os.pathsep.join([str(first), "", str(second)]))
    with isolated_registries():
        load_plugins()
        for kind, registry in ALL.items():
            assert f"k_{kind.split('_')[-1]}" in registry, (kind, registry.names())
        assert package_name(first) != package_name(second)
        assert package_name(first).startswith("rnnlab_plugins.plugins_")
        assert f"{package_name(first)}.datasets" in sys.modules
        assert f"{package_name(second)}.numpy" in sys.modules
        assert Path(sys.modules["numpy"].__file__).parent.name == "numpy"  # still the real one
        assert OPTIMIZERS.build({"name": "k_optimizer", "lr": 0.5}).name == "k_optimizer"


def test_a_plugin_path_that_is_not_a_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(PATH_ENV, str(tmp_path / "nope"))
    with pytest.raises(PluginError, match=rf"^{PATH_ENV} names .*nope', which is not a directory"):
        load_plugins()


def test_a_plugin_file_that_fails_to_import_is_one_line(tmp_path):
    write(tmp_path / "broken", "broken.py", "1 / 0\n")
    with pytest.raises(PluginError, match=r"^plugin file .*broken.py failed to import: "
                                          r"ZeroDivisionError: division by zero$"):
        load_folder(tmp_path / "broken")
    assert not any(name.endswith(".broken") for name in sys.modules)  # retried next time


@needs_data("dinos.txt")
def test_a_one_file_sampler_on_the_plugin_path_is_usable_with_its_options(tmp_path):
    folder = tmp_path / "my plugins"
    write(folder, "floor.py", FLOOR_SAMPLER.format(name="floor"))
    with plugin_path(folder):
        proc = run_cli("framework", [*QUICK, "cell=rnn", "sampler=floor", "sampler.floor=0.25",
                                     "train.steps=6"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "done: 6 steps" in proc.stdout
        helped = run_cli("framework", ["--help"], tmp_path)
        assert "sampler: categorical, floor, greedy" in helped.stdout, helped.stdout
        proc = run_cli("framework", [*QUICK, "sampler=floor", "sampler.floor=2"], tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.strip() == ("rnnlab: error: sampler 'floor': sampler.floor must be in "
                                       "[0, 1], got 2.0"), proc.stderr
        proc = run_cli("framework", [*QUICK, "sampler=floor", "sampler.flor=0.1"], tmp_path)
        assert proc.returncode == 2 and "did you mean 'sampler.floor'?" in proc.stderr
    assert "floor" not in SAMPLERS
    proc = run_cli("framework", [*QUICK, "sampler=floor"], tmp_path)  # gone with the folder
    assert proc.returncode == 2 and "unknown sampler 'floor'" in proc.stderr, proc.stderr


def test_a_plugin_file_in_a_guessed_folder_is_never_offered(tmp_path, monkeypatch):
    """conf/sampler/ and framework/ are not plugin folders: --help does not list the sampler,
    and both --help and the unknown-name error say where the file belongs."""
    root = tmp_path / "repo"
    for folder in ("cell", "experiment", "sampler"):
        (root / "conf" / folder).mkdir(parents=True)
    write(root / "conf" / "sampler", "mine.yaml", "name: mine\nfloor: 0.5\n")
    write(root / "conf" / "sampler", "mine.py", FLOOR_SAMPLER.format(name="mine"))
    write(root / "framework" / "nn", "other.py", FLOOR_SAMPLER.format(name="other"))
    monkeypatch.setattr(groups, "ROOT", root)
    monkeypatch.setattr(groups, "CONF", root / "conf")
    text = groups.listing()
    sampler_line = next(line for line in text.splitlines() if line.startswith("sampler:"))
    assert sampler_line == f"sampler: {', '.join(SAMPLERS.names())}"
    assert "conf/sampler/mine.yaml: no plugin registers sampler 'mine'" in text
    assert "conf/sampler/mine.py: registers sampler 'mine' but is never loaded" in text
    assert "framework/nn/other.py: registers sampler 'other' but is never loaded" in text
    message = str(unknown_plugin(SAMPLERS, "mine"))
    assert message.startswith("unknown sampler 'mine'")
    assert "conf/sampler/mine.yaml configures it" in message
    assert "conf/sampler/mine.py registers it, but is not in a plugin folder" in message
    assert "RNNLAB_PLUGIN_PATH" in message and "\n" not in message


def test_discovery_runs_once_on_first_use_in_a_fresh_process(tmp_path):
    code = textwrap.dedent("""
        import sys
        from framework import plugins
        from framework.registry import CELLS
        assert not plugins._state["loaded"] and "rnnlab_plugins.cells.rnn" not in sys.modules
        assert "rnn" in CELLS  # the first read runs discovery
        assert plugins._state["loaded"]
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


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
    proc = run_cli("framework", [*QUICK, "cell=toyrnn"], tmp_path)
    assert proc.returncode == 2 and "unknown cell 'toyrnn'" in proc.stderr


def test_shell_completion_offers_the_registered_plugin_names(tmp_path):
    rnnlab = Path(sys.executable).parent / "rnnlab"
    assert rnnlab.is_file(), "the `rnnlab` command is installed with the project"
    env = {**os.environ, "COMP_LINE": "rnnlab cell="}
    proc = subprocess.run([str(rnnlab), "-sc", "query=bash"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"cell={name}" for name in CELLS.names()]
    install = subprocess.run([str(rnnlab), "-sc", "install=bash"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert "complete -o nospace -o default -F hydra_bash_completion rnnlab" in install.stdout


@needs_data("tinyshakespeare.txt")
def test_a_new_feed_brings_its_train_option_and_resume_keeps_it(tmp_path):
    """A feed in one file: its option is a train.* key (composed, validated, must match on
    resume) without an edit to the config schemas, the trainer, the resume check or
    conf/config.yaml."""
    from dataclasses import dataclass

    from framework.registry import FEEDS
    from framework.training.checkpoint import conflicts, must_match
    from framework.training.config import train_plugin_fields
    from framework.training.trainer import Reporter, Trainer
    from tests.helpers import run_config

    @dataclass
    class SkipConfig:
        skip: int = 1  # train.skip: train on every skip-th batch of the stream feed

        def __post_init__(self):
            if self.skip < 1:
                raise ValueError(f"skip must be >= 1, got {self.skip}")

    with isolated_registries():
        @FEEDS.register("skipping", schema=SkipConfig)
        def skipping(cfg, **run):
            feed = FEEDS.build({"name": "stream"}, **run)
            batch = feed.batch
            feed.batch = lambda step: batch(step * cfg.skip)
            return feed

        overrides = [*QUICK, "dataset=tinyshakespeare", "train.feed=skipping"]
        rc = run_config([*overrides, "train.skip=3"])
        assert rc.feed.skip == 3 and rc.to_dict()["train"]["skip"] == 3
        assert run_config(overrides).feed.skip == 1  # the schema's default, composed
        with pytest.raises(ConfigError, match=r"^feed .skipping.: train.skip must be >= 1, got 0$"):
            run_config([*overrides, "train.skip=0"])
        assert "train.skip" in must_match()
        assert conflicts({"train": {"skip": 3}}, {"train": {"skip": 2}}) == [
            "train.skip=3 in the checkpoint, 2 now"]
        trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(None, lambda _: None))
        assert trainer.train_step().step == 0 and trainer.step == 1

        @dataclass
        class Other:
            skip: int = 5

        FEEDS.register("other", schema=Other)(skipping)
        with pytest.raises(PluginError, match=r"^feed 'other' declares train.skip with default 5, "
                                              r"feed 'skipping' with 1; give them one default"):
            train_plugin_fields()
