"""The cluster launchers' configs (Ray, Slurm) and the Ray worker setup hook, without a cluster.

A real Ray cluster is tested in tests/sweeps/test_ray_cluster.py (slow stage); Slurm cannot be
run here.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from framework.cli.overrides import store_plugin_configs
from framework.errors import ConfigError
from framework.plugins import ROOT
from framework.sweeps import ray_launcher as ray_support
from tests.helpers import cli

# Composing through the compose API shows Hydra's schema-matching warning that the CLI silences.
pytestmark = pytest.mark.filterwarnings("ignore:\\s*'hydra/launcher/ray' is validated")
PLUGIN = importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None


def launcher_config(option: str = "ray"):
    store_plugin_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={option}"],
                      return_hydra_config=True)
    return cfg.hydra.launcher


def test_ray_option_is_rnnlabs_file_and_never_sends_object_store_memory():
    launcher = launcher_config()
    # rnnlab's conf/hydra/launcher/ray.yaml wins over the plugin's structured config of the same
    # name (whose init holds only `address`).
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    init = launcher.ray.init
    assert "object_store_memory" in init and init.object_store_memory is None
    # What hydra-ray-launcher 1.2.2 does before ray.init: a present key (even null) stays null,
    # which is what joining a running cluster requires.
    init.setdefault("object_store_memory", 78643200)
    assert init.object_store_memory is None
    assert launcher.ray.remote.num_cpus == 1


def test_workers_get_the_launch_dir_and_a_setup_hook_that_exists():
    init = launcher_config().ray.init
    env = init.runtime_env.env_vars
    assert OmegaConf.to_container(env, resolve=True)["RNNLAB_LAUNCH_DIR"] == os.getcwd()
    module, _, name = init.runtime_env.worker_process_setup_hook.rpartition(".")
    assert getattr(importlib.import_module(module), name) is ray_support.setup
    assert set(env) == {"RNNLAB_LAUNCH_DIR", "RNNLAB_PARENT_RUN_ID"}


def test_setup_hook_moves_the_worker_to_the_launch_dir(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    monkeypatch.setenv("RNNLAB_LAUNCH_DIR", str(tmp_path))
    monkeypatch.setenv("RNNLAB_PARENT_RUN_ID", "abc123")
    ray_support.setup()
    assert Path.cwd() == tmp_path
    assert os.environ["RNNLAB_PARENT_RUN_ID"] == "abc123"


def test_setup_hook_without_the_launch_dir_warns_and_stays(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNLAB_LAUNCH_DIR", str(tmp_path / "not-on-this-node"))
    monkeypatch.setenv("RNNLAB_PARENT_RUN_ID", "")  # a sweep with mlflow.enabled=false
    ray_support.setup()
    assert Path.cwd() == tmp_path
    assert "RNNLAB_PARENT_RUN_ID" not in os.environ  # so the config reads null, not ""
    err = capsys.readouterr().err
    assert "does not exist on this Ray node" in err and "absolute paths" in err


def test_ray_launcher_without_the_plugin_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    ray_support.precheck_launcher(["cell=rnn", "hydra/launcher=joblib"])  # not asked: fine
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        ray_support.precheck_launcher(["-m", "hydra/launcher=ray", "cell=rnn,gru"])


# Slow stage: CI installs the `.[ray]` extra only for it.
@pytest.mark.slow
@pytest.mark.skipif(not PLUGIN, reason="needs hydra-ray-launcher: pip install -e '.[ray]'")
def test_cli_composes_the_ray_launcher_without_a_schema_warning(tmp_path):
    proc = cli("framework", ["hydra/launcher=ray", "--cfg", "hydra", "-p", "hydra.launcher"],
               tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "object_store_memory: null" in proc.stdout
    assert "validated against ConfigStore schema" not in proc.stderr


def test_slurm_example_composes_into_submitits_slurm_launcher():
    launcher = launcher_config("slurm_cluster")
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher." \
                                "SlurmLauncher"
    assert (launcher.timeout_min, launcher.cpus_per_task, launcher.mem_gb) == (60, 2, 4)
    assert launcher.partition is None and launcher.array_parallelism == 16
    assert any("RNNLAB_DATA_DIR" in line for line in launcher.setup)
