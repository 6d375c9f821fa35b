"""A sweep on a real Ray cluster: ``-m ... hydra/launcher=ray hydra.launcher.ray.init.address=``.

tests/sweeps/ray_cluster.sh starts a head node and a worker node on 127.0.0.1 (``ray start``),
checks that a driver with a wrong token is refused, runs the 6-job grid exactly as the docs write
it (default relative sweep dir and ``sqlite:///mlflow.db``, so the workers must start in the launch
directory), and stops the cluster. It runs in fresh network and PID namespaces (``unshare``, as
root): Ray's ports are reachable only on that namespace's loopback, token authentication is on,
and no Ray process can outlive the test. Ray needs ~10 s per node to start on 2 cores.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from framework.plugins import ROOT
from tests.sweeps.test_sweep import TINY, parent_and_children

SCRIPT = Path(__file__).with_name("ray_cluster.sh")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the cluster runs in its own network namespace (unshare --net)"
    for module, what in (("ray", "Ray"), ("hydra_plugins.hydra_ray_launcher",
                                          "hydra-ray-launcher")):
        if importlib.util.find_spec(module) is None:
            return f"{what} is not installed: pip install -e '.[ray]'"
    return None


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_six_job_sweep_on_a_two_node_ray_cluster_with_token_auth(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    temp = tempfile.mkdtemp(prefix="rnnlab-ray-", dir="/tmp")  # short socket paths
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_TEMP_DIR": temp, "RAY_PORT": "6379", "RAY_WORKERS": "1",
           "RAY_CHECK_BAD_TOKEN": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "OPENBLAS_NUM_THREADS": "1"}
    env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    env.pop("RAY_ADDRESS", None)
    args = ["-m", *TINY, "cell=rnn,lstm,gru", "optimizer.lr=0.01,0.003", "hydra/launcher=ray",
            "mlflow.experiment_name=ray"]
    try:
        proc = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
             "bash", str(SCRIPT), str(tmp_path), sys.executable, *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=360)
        # Nothing of the cluster outlives the namespace (ray stop, then the PID namespace's end).
        left = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    out = proc.stdout + proc.stderr
    # The stage timings (ray start, the wrong-token check, the sweep), shown by pytest -s.
    print("\n".join(line for line in proc.stdout.splitlines() if line.startswith("== ")))
    assert proc.returncode == 0, out[-4000:]
    assert left.stdout.strip() == "", f"Ray processes left running: {left.stdout}"
    assert "refused: InvalidAuthToken" in proc.stdout, out[-2000:]
    assert "Connected to Ray cluster" in out  # joined the running cluster, started none
    assert "object_store_memory must not be provided" not in out

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent, children = parent_and_children(client, "ray")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sweep.launcher"] == "RayLauncher"
    assert len(children) == 6 and {c.info.status for c in children} == {"FINISHED"}
    combos = {(c.data.params["cell.name"], c.data.params["optimizer.lr"]) for c in children}
    assert combos == set(itertools.product(["rnn", "lstm", "gru"], ["0.01", "0.003"]))
    # The jobs wrote into the sweep dir under the launch directory, not where `ray start` ran.
    sweep_dir = Path(parent.data.params["sweep.dir"])
    assert sweep_dir.parent.parent == tmp_path / "multirun"
    records = [json.loads(p.read_text()) for p in sweep_dir.glob("*/rnnlab_job.json")]
    assert sorted(r["num"] for r in records) == list(range(6))
    assert {r["status"] for r in records} == {"COMPLETED"}
