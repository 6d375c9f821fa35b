"""The MLflow UI views rnnlab links: the options that differ and the main metric, exact enough."""

from __future__ import annotations

import json
import math

import pytest

from framework.tracking.ui_view import (
    VIEW_TAG_PREFIX,
    decimals_to_tell_apart,
    exact_tag,
    save_run_view,
    ui_links,
)
from tests.helpers import sqlite_store


@pytest.mark.parametrize("values, decimals", [
    ([], 4),
    ([1.70712], 4),
    ([1.70712, 1.70734, 2.5], 4),  # the UI's 3 decimals show both as 1.707
    ([1.707121, 1.707124], 6),
    ([1.70712, 1.70712, math.nan, math.inf], 4),  # equal values need no more; NaN is no value
    ([1.0, 1.0 + 1e-15], 12),  # never more than 12
])
def test_decimals_tell_distinct_values_apart(values, decimals):
    assert decimals_to_tell_apart(values) == decimals


@pytest.fixture
def store(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_store(tmp_path / "mlflow.db"))
    experiment = client.create_experiment("views", artifact_location=str(tmp_path / "art"))
    return client, experiment


def add_run(client, experiment, task, val_loss, **params):
    run = client.create_run(experiment, tags={"task": task})
    for key, value in {"cell.name": "lstm", "cell.hidden_size": "128", **params}.items():
        client.log_param(run.info.run_id, key, value)
    client.log_metric(run.info.run_id, "val_loss", val_loss)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def view_state(client, experiment, key):
    return json.loads(client.get_experiment(experiment).tags[f"{VIEW_TAG_PREFIX}{key}"])


def test_run_view_shows_swept_options_and_the_main_metric_exactly(store):
    client, experiment = store
    # train.batch_size is swept (no key option of the task), model.dropout the same everywhere.
    ids = [add_run(client, experiment, "lm", loss, **{"train.batch_size": size,
                                                      "model.dropout": "0.0"})
           for loss, size in ((1.707121, "16"), (1.707124, "32"), (1.9, "64"))]
    other = add_run(client, experiment, "classify", 0.123456789, **{"train.feed": "labelled"})

    assert save_run_view(client, experiment, "lm") == "rnnlab-lm"
    columns = view_state(client, experiment, "rnnlab-lm")["selectedColumns"]
    tag = exact_tag("val_loss")
    assert columns.index("params.`train.batch_size`") > columns.index("params.`cell.name`")
    assert "params.`model.dropout`" not in columns and "params.`train.feed`" not in columns
    # The exact value right after the metric the UI rounds to 3 decimals.
    assert columns.index(f"tags.`{tag}`") == columns.index("metrics.`val_loss`") + 1
    texts = [client.get_run(i).data.tags[tag] for i in ids]
    assert texts == ["1.707121", "1.707124", "1.900000"]
    assert tag not in client.get_run(other).data.tags  # another task's view, another time

    # A new run that needs fewer decimals keeps the ones that tell the others apart.
    ids.append(add_run(client, experiment, "lm", 2.0, **{"train.batch_size": "16"}))
    save_run_view(client, experiment, "lm")
    assert client.get_run(ids[-1]).data.tags[tag] == "2.000000"


def test_a_store_that_cannot_search_still_gets_the_view(store):
    client, experiment = store

    class NoSearch:
        def __getattr__(self, name):
            return getattr(client, name)

        def search_runs(self, *args, **kwargs):
            raise RuntimeError("no search here")

    assert save_run_view(NoSearch(), experiment, "lm") == "rnnlab-lm"
    columns = view_state(client, experiment, "rnnlab-lm")["selectedColumns"]
    assert "metrics.`val_loss`" in columns and not any(c.startswith("tags.") for c in columns)


def test_links_carry_the_view_key():
    links = ui_links("sqlite:///mlflow.db", "3", "rnnlab-lm", ["a" * 32])
    assert links["runs"] == ("http://127.0.0.1:5000/#/experiments/3/runs?workflowType="
                             "machine_learning&viewStateShareKey=rnnlab-lm")
    assert links["run"].endswith("/#/experiments/3/runs/" + "a" * 32)
