"""A sweep job killed by ``kill -9`` (its joblib worker dies) cannot end its MLflow run: the
sweep, once its jobs are done, ends that child run KILLED and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import needs_data
from tests.helpers import cli

PLUGIN = '''"""A cell that kills its own process in its third forward pass."""
import os
import signal

from cells.rnn import RNNCell
from framework.nn.cell import CellConfig
from framework.registry import CELLS

CALLS = []


@CELLS.register("killed_rnn", schema=CellConfig)
class KilledRNN(RNNCell):
    def forward(self, *args, **kwargs):
        CALLS.append(1)
        if len(CALLS) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(*args, **kwargs)
'''


@pytest.mark.slow
@needs_data("dinos.txt")
def test_a_killed_jobs_run_is_marked_killed_by_its_sweep(tmp_path: Path):
    from mlflow import MlflowClient

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "killed_rnn.py").write_text(PLUGIN)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = cli("framework", [
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "cell=rnn,killed_rnn",
        "train.steps=20", "cell.hidden_size=8", "train.batch_size=8", "train.eval_every=0",
        "train.sample_every=0", "train.checkpoint_every=5", "mlflow.log_model=false",
        f"mlflow.tracking_uri={uri}", "mlflow.experiment_name=killed"], tmp_path,
        env={"RNNLAB_PLUGIN_PATH": str(plugins)})
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "[HYDRA]" not in line]
    assert errors[0] == (
        "rnnlab: error: a worker process of the sweep's launcher died under a job "
        "(TerminatedWorkerError, exit SIGKILL(-9)); the sweep stopped: the process was killed "
        "or ran out of memory (the jobs' train.log files and the system log say which)"), errors
    assert "Traceback" not in proc.stderr and "leaked semaphore" not in proc.stderr
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("killed")
    runs = client.search_runs([exp.experiment_id])
    killed = [r for r in runs if r.data.params.get("cell.name") == "killed_rnn"]
    assert len(killed) == 1 and killed[0].info.status == "KILLED", [
        (r.data.params.get("cell.name"), r.info.status) for r in runs]
    assert "ended without ending the run" in killed[0].data.tags["rnnlab.failure_reason"]
    # Nothing stays RUNNING: the other job finished, or its worker was stopped with the pool.
    assert "RUNNING" not in {r.info.status for r in runs}
    warned = [line for line in errors if "were left RUNNING by a job whose process was killed"
              in line]
    assert errors == [errors[0], *warned] and len(warned) == 1  # the warning as the sweep ends
    assert killed[0].info.run_id in warned[0]
