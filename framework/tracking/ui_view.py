"""Links into the MLflow UI that open with useful columns: saved runs views and compare pages.

The runs page keeps its columns in the browser's local storage, so a fresh browser shows no
metric column at all. A "shared view" (experiment tag ``mlflow.sharedViewState.<key>``, the
format of the UI's own Share button) stores a filter, an order and the columns; a link with
``viewStateShareKey=<key>`` opens it. Sweeps save one per sweep (its children, ranked by the
task's first metric, the swept params as columns); a single run saves one per task and
experiment (its runs, newest first, the task's metrics, its key options and every option that
differs between those runs as columns), written again by every run, so it stays one tag however
many runs there are.

The UI rounds a metric below 10 to 3 decimals (``1.707`` for 1.70712 and 1.70734), too few to
tell runs of one sweep apart. Each run of a view therefore also carries its main metric as text
in the tag ``exact <metric>``, with the decimals that tell the view's values apart
(:func:`decimals_to_tell_apart`), and the view shows that tag beside the metric.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
# What `mlflow ui` serves by default (README): where a link into a sqlite store's UI points.
LOCAL_UI = "http://127.0.0.1:5000"
FEWEST_DECIMALS, MOST_DECIMALS = 4, 12  # of the exact-metric tag
MAX_VIEW_RUNS = 200  # the newest runs a single run's view considers for its columns and digits
MAX_EXTRA_PARAMS = 12  # differing options shown beyond the task's key options


def columns_of(compare_metrics: Sequence[str]) -> list[str]:
    """A task's ``compare_metrics`` as the metrics MLflow has, with val_loss and throughput."""
    metrics = ["val_bits_per_char" if m == "bits_per_char" else m for m in compare_metrics]
    if "val_loss" not in metrics:
        metrics.append("val_loss")
    return [*metrics, "run_chars_per_sec"]


def _task(name: str) -> Any:
    """The registered task class of that name (loads the plugins), or the base Task for a
    name no plugin here defines."""
    from framework.plugins import load_plugins
    from framework.registry import TASKS
    from framework.tasks.base import Task

    load_plugins()
    return TASKS.get(name) if name in TASKS else Task


def metric_columns(task: str) -> list[str]:
    """The metric columns of a task's views."""
    return columns_of(_task(task).compare_metrics)


def key_params(task: str) -> tuple[str, ...]:
    """The options that tell runs of a task apart at a glance (the task's ``key_params``)."""
    return tuple(_task(task).key_params)


def exact_tag(metric: str) -> str:
    """The tag that holds ``metric`` as text with enough decimals (a view column)."""
    return f"exact {metric}"  # a tag name may not hold brackets


def decimals_to_tell_apart(values: Sequence[float]) -> int:
    """The fewest decimals (at least FEWEST_DECIMALS, at most MOST_DECIMALS) at which the
    distinct finite ``values`` are still distinct."""
    distinct = sorted({v for v in values if math.isfinite(v)})
    for decimals in range(FEWEST_DECIMALS, MOST_DECIMALS):
        if len({f"{v:.{decimals}f}" for v in distinct}) == len(distinct):
            return decimals
    return MOST_DECIMALS


def mark_exact(client: Any, runs: Sequence[Any], metric: str) -> str:
    """Write the tag :func:`exact_tag` on each of ``runs`` that has ``metric`` (only where its
    text changes); returns the tag's name."""
    tag = exact_tag(metric)
    values = {run.info.run_id: run.data.metrics[metric] for run in runs
              if metric in run.data.metrics}
    decimals = decimals_to_tell_apart(list(values.values()))
    for run in runs:
        if run.info.run_id in values:
            text = f"{values[run.info.run_id]:.{decimals}f}"
            if run.data.tags.get(tag) != text:
                client.set_tag(run.info.run_id, tag, text)
    return tag


def differing_options(runs: Sequence[Any], shown: Sequence[str]) -> list[str]:
    """The options whose values differ between ``runs`` and are not in ``shown`` (at most
    MAX_EXTRA_PARAMS, in name order)."""
    from framework.tracking.params import differing_params

    return [p for p in differing_params(runs) if p not in shown][:MAX_EXTRA_PARAMS]


def save_view(client: Any, experiment_id: str, key: str, *, params: Sequence[str],
              metrics: Sequence[str], search_filter: str = "",
              order_by: str = "attributes.start_time", ascending: bool = False,
              tags: Sequence[str] = ()) -> str | None:
    """Store a shared view on the experiment; returns its key (None when the store refused).
    ``tags`` are shown right after the first metric."""
    columns = [f"params.`{p}`" for p in params] + [f"metrics.`{m}`" for m in metrics[:1]]
    columns += [f"tags.`{t}`" for t in tags] + [f"metrics.`{m}`" for m in metrics[1:]]
    state = {"searchFilter": search_filter, "orderByKey": order_by, "orderByAsc": ascending,
             "selectedColumns": columns}
    try:
        client.set_experiment_tag(experiment_id, f"{VIEW_TAG_PREFIX}{key}", json.dumps(state))
    except Exception:  # an old server without shared views: the run itself is complete
        return None
    return key


def save_run_view(client: Any, experiment_id: str, task: str,
                  metrics: Sequence[str] | None = None) -> str | None:
    """The view a single run links to: the experiment's runs of ``task``, newest first, with
    the task's key options and those that differ between the runs, the metrics (``metrics``;
    None: :func:`metric_columns` finds them) and the first one exact."""
    metrics = list(metrics) if metrics else metric_columns(task)
    search_filter = f"tags.task = '{task}'"
    params, tags = list(key_params(task)), []
    try:
        runs = client.search_runs([experiment_id], search_filter, max_results=MAX_VIEW_RUNS,
                                  order_by=["attributes.start_time DESC"])
        params += differing_options(runs, params)
        tags.append(mark_exact(client, runs, metrics[0]))
    except Exception:  # the view without those columns: the run itself is complete
        pass
    return save_view(client, experiment_id, f"rnnlab-{task}", params=params, metrics=metrics,
                     search_filter=search_filter, tags=tags)


def ui_base(tracking_uri: str) -> str:
    """The UI's address: the tracking server itself, or ``mlflow ui``'s default for a
    database store."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return LOCAL_UI


def ui_links(tracking_uri: str, experiment_id: str | None, view_key: str | None,
             run_ids: Sequence[str] = ()) -> dict[str, str]:
    """Full URLs of the experiment's runs table (in view ``view_key``), the compare page of
    ``run_ids`` and, for one run, its page."""
    base = ui_base(tracking_uri)
    runs = "runs?workflowType=machine_learning"
    if view_key:
        runs += f"&viewStateShareKey={view_key}"
    ids = ",".join(f'"{r}"' for r in run_ids)
    links = {"runs": f"{base}/#/experiments/{experiment_id}/{runs}",
             "compare": f'{base}/#/compare-runs?runs=[{ids}]&experiments=["{experiment_id}"]'}
    if len(run_ids) == 1:
        links["run"] = f"{base}/#/experiments/{experiment_id}/runs/{run_ids[0]}"
    return links


__all__ = ["LOCAL_UI", "VIEW_TAG_PREFIX", "columns_of", "decimals_to_tell_apart",
           "differing_options", "exact_tag", "key_params", "mark_exact", "metric_columns",
           "save_run_view", "save_view", "ui_base", "ui_links"]
