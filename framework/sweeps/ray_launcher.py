"""Sweeps on a Ray cluster: the worker setup hook of conf/hydra/launcher/ray.yaml and its checks.

``hydra/launcher=ray`` is rnnlab's own ``conf/hydra/launcher/ray.yaml``: Hydra finds the config
directory before the structured config of the same name that hydra-ray-launcher registers, and
then only validates the file against that schema (with a deprecation warning, silenced here,
because that validation is exactly what is wanted). The file sets ``object_store_memory: null``
(the plugin adds 75 MB when the key is missing, which Ray refuses when joining a running
cluster) and gives the workers a runtime environment with this module's :func:`setup` hook.

Ray starts worker processes in the directory where ``ray start`` ran, with that shell's
environment, not the launching one's. :func:`setup` moves each worker to the launch directory
(when that path exists on its node, as on a shared filesystem mounted at the same place), so
relative paths (the default ``multirun/...`` sweep dir, ``sqlite:///mlflow.db``) mean on every
worker what they mean where the sweep was started.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

from framework.errors import ConfigError

LAUNCH_DIR_ENV = "RNNLAB_LAUNCH_DIR"
PLUGIN_MODULE = "hydra_plugins.hydra_ray_launcher"
_LAUNCHER_ARGS = ("hydra/launcher=ray", "hydra/launcher=ray_aws")


def setup() -> None:
    """Ray worker process setup hook: start in the launch directory when this node has it."""
    from framework.sweeps.nested_runs import PARENT_ENV

    if not os.environ.get(PARENT_ENV):
        # The config passes "" when the sweep has no parent run (mlflow.enabled=false).
        os.environ.pop(PARENT_ENV, None)
    launch = os.environ.get(LAUNCH_DIR_ENV)
    if not launch:
        return
    if os.path.isdir(launch):
        os.chdir(launch)
        return
    print(f"rnnlab: warning: the launch directory {launch} does not exist on this Ray node; "
          f"relative paths resolve against {os.getcwd()}: give hydra.sweep.dir and "
          f"mlflow.tracking_uri as absolute paths on a filesystem every node shares, or use a "
          f"tracking server (docs/cluster.md)", file=sys.stderr, flush=True)


def precheck_launcher(argv: list[str]) -> None:
    """A one-line error when ``hydra/launcher=ray`` is asked for without the plugin installed;
    otherwise silence Hydra's schema-matching warning for rnnlab's ray.yaml."""
    if not any(arg.strip() in _LAUNCHER_ARGS for arg in argv):
        return
    if importlib.util.find_spec(PLUGIN_MODULE) is None or importlib.util.find_spec("ray") is None:
        raise ConfigError("hydra/launcher=ray needs hydra-ray-launcher and Ray: "
                          "pip install -e '.[ray]' (docs/cluster.md)")
    warnings.filterwarnings(
        "ignore", message=r"\s*'hydra/launcher/ray' is validated against ConfigStore schema")


__all__ = ["LAUNCH_DIR_ENV", "precheck_launcher", "setup"]
