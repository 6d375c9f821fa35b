"""``python -m framework.compare``: ranked run tables in the terminal, Markdown and CSV."""

from __future__ import annotations

import csv
import io
import math

import pytest

from framework.cli.compare import main
from framework.tracking.run_table import build_table
from tests.helpers import cli, sqlite_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An experiment with three loose runs and a sweep (parent + two children)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    root = tmp_path_factory.mktemp("compare")
    uri = sqlite_store(root / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("exp", artifact_location=(root / "art").as_uri())

    def run(name, params, metrics, tags=None):
        r = client.create_run(exp, run_name=name, tags=tags or {})
        client.log_batch(r.info.run_id, params=[Param(k, v) for k, v in params.items()],
                         metrics=[Metric(k, v, 0, 10) for k, v in metrics.items()])
        client.set_terminated(r.info.run_id, "FINISHED")
        return r.info.run_id

    common = {"train.steps": "20", "mlflow.run_name": "x"}
    ids = {
        "slow": run("slow", {**common, "cell.name": "rnn", "optimizer.lr": "0.01",
                             "mlflow.tracking_uri": "a"},
                    {"val_loss": 2.5, "val_bits_per_char": 2.5 / math.log(2),
                     "run_chars_per_sec": 1234.5}),
        "best": run("best", {**common, "cell.name": "lstm", "optimizer.lr": "0.01",
                             "mlflow.tracking_uri": "b"},
                    {"val_loss": 2.0, "chars_per_sec": 999.0}),
        "noval": run("noval", {**common, "cell.name": "gru", "optimizer.lr": "0.003"}, {}),
    }
    parent = run("sweep", {"sweep.keys": "cell"}, {"best_val_loss": 1.0},
                 tags={"rnnlab.sweep": "true"})
    for name, loss in (("child-a", 1.5), ("child-b", 1.0)):
        ids[name] = run(name, {"cell.name": name, "train.steps": "20"}, {"val_loss": loss},
                        tags={"mlflow.parentRunId": parent})
    return uri, parent, ids, root


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """The terminal table is fitted to the terminal's width: give every test the same one."""
    monkeypatch.setenv("COLUMNS", "160")


def _csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_experiment_table_is_ranked_with_differing_params_only(store, capsys):
    uri, _, ids, _ = store
    assert main(["exp", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "experiment 'exp'"
    header = lines[1].split()
    assert header[:4] == ["rank", "run", "run_id", "status"]
    assert header[-3:] == ["val_loss", "bits_per_char", "chars_per_sec"]
    # train.steps is the same everywhere; mlflow.* are tracking settings: neither is a column.
    assert "cell.name" in header and "optimizer.lr" in header
    assert "train.steps" not in header and "mlflow.tracking_uri" not in header
    body = lines[3:]
    order = [line.split()[1] for line in body]
    assert order == ["child-b", "child-a", "best", "slow", "noval"]  # the sweep parent is left out
    assert "2.0000" in body[2] and "2.8854" in body[2] and "999" in body[2]
    assert "1,234" in body[3] or "1,235" in body[3]
    assert body[4].rstrip().endswith("-")  # no val_loss: ranked last, shown as "-"


def test_parent_run_id_lists_its_children_as_markdown(store, capsys):
    uri, parent, ids, _ = store
    assert main([parent, "--format", "markdown", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### children of run 'sweep'")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "rank" not in line]
    assert len(rows) == 2 and "child-b" in rows[0] and "child-a" in rows[1]
    assert "|---:|---|---|---|---|---:|---:|---:|" in out


def test_csv_to_file_has_full_precision(store, tmp_path, capsys):
    uri, _, ids, _ = store
    target = tmp_path / "out" / "runs.csv"
    assert main(["exp", "--format", "csv", "--output", str(target), "--tracking-uri", uri]) == 0
    assert "wrote 5 runs" in capsys.readouterr().err
    rows = _csv_rows(target.read_text())
    assert [r["run"] for r in rows] == ["child-b", "child-a", "best", "slow", "noval"]
    slow = rows[3]
    assert slow["run_id"] == ids["slow"] and float(slow["chars_per_sec"]) == 1234.5
    assert float(slow["bits_per_char"]) == pytest.approx(2.5 / math.log(2))
    assert rows[4]["val_loss"] == "nan" and rows[4]["chars_per_sec"] == ""


def test_unknown_target_and_missing_store_are_one_line_errors(store, tmp_path, capsys):
    uri, *_ = store
    assert main(["nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnlab: error: 'nope' is neither") and "exp" in err
    assert "\n" not in err
    missing = tmp_path / "none.db"
    assert main(["exp", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert not missing.exists()  # reading never creates an empty store


def test_empty_table_renders():
    table = build_table([], "nothing")
    assert "(no runs)" in table.render("table")
    assert table.render("csv").startswith("rank,run,run_id,status,val_loss")
    with pytest.raises(ValueError):
        table.render("html")


def test_module_entry_point(store, tmp_path):
    uri, *_ = store
    proc = cli("framework.compare", ["exp", "--tracking-uri", uri, "--format", "markdown"],
               tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| 1 | child-b |" in proc.stdout


def test_key_value_options_are_the_flags_of_the_other_commands():
    from framework.cli.compare import key_value_args

    assert key_value_args(["experiment=rnnlab", "mlflow.tracking_uri=sqlite:///x.db",
                           "format=csv", "params=[cell.name,optimizer.lr]", "output=t.csv"]) == [
        "rnnlab", "--tracking-uri", "sqlite:///x.db", "--format", "csv", "--params",
        "cell.name", "optimizer.lr", "--output", "t.csv"]
    assert key_value_args(["run_id=abc", "--format", "markdown"]) == ["abc", "--format",
                                                                      "markdown"]


def test_runs_are_grouped_by_task_and_dataset():
    from types import SimpleNamespace

    from framework.cli.compare import by_task_and_dataset

    def run(tags):
        return SimpleNamespace(data=SimpleNamespace(tags=tags))

    runs = [run({"task": "classify", "dataset": "names"}), run({"dataset": "dinos"}),
            run({"task": "classify", "dataset": "names"}), run({"task": "lm", "dataset": "dinos"})]
    groups = by_task_and_dataset(runs)
    assert list(groups) == [("classify", "names"), ("lm", "dinos")]  # untagged runs: lm
    assert [len(g) for g in groups.values()] == [2, 2]
