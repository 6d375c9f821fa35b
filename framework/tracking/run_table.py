"""MLflow runs found and ranked: a sweep's children or an experiment's runs, as a table.

The columns are the rank, run name, run id and status, the params whose values differ between the
runs (tracking settings ``mlflow.*`` left out), then the final metrics of the runs' task (the task
plugin's ``compare_metrics``) and its throughput; runs are ranked by the first of those metrics,
runs without it last. ``python -m framework.compare`` prints such a table, and the summary that
:mod:`framework.sweeps.nested_runs` logs to a sweep's parent run is the same table.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from framework.errors import RnnlabError, TrackingError
from framework.tracking.params import differing_params
from framework.tracking.tracker import _sqlite_path, make_client

FORMATS = ("table", "markdown", "csv")
SWEEP_TAG = "rnnlab.sweep"  # set on a sweep's parent run
PARENT_TAG = "mlflow.parentRunId"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_PAGE = 1000
LM_COLUMNS = ("val_loss", "bits_per_char")


@dataclass
class RunTable:
    """Runs ranked by final validation loss, with the params that tell them apart."""

    title: str
    params: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    metrics: tuple[str, ...] = LM_COLUMNS
    speed: str = "chars_per_sec"

    @property
    def columns(self) -> list[str]:
        return ["rank", "run", "run_id", "status", *self.params, *self.metrics, self.speed]

    @property
    def numeric(self) -> set[str]:
        return {"rank", *self.metrics, self.speed}

    def best(self) -> dict[str, Any] | None:
        key = self.metrics[0]
        return self.rows[0] if self.rows and _finite(self.rows[0].get(key)) else None

    def cells(self, row: dict[str, Any]) -> list[str]:
        """A row as display strings (4 decimals for losses, whole chars/s)."""
        out = []
        for col in self.columns:
            value = row.get(col)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                out.append("-" if col in self.numeric else "")
            elif col == self.speed:
                out.append(f"{value:,.0f}")
            elif isinstance(value, float):
                out.append(f"{value:.4f}")
            else:
                out.append(str(value))
        return out

    def fitted(self, width: int) -> tuple[RunTable, list[str]]:
        """This table with only as many param columns as fit in ``width`` characters, and the
        params left out.  Plugin choices (``cell.name`` ...) come first, then the params with the
        most distinct values."""
        if len(self.to_text().splitlines()[1]) <= width:
            return self, []
        distinct = {p: len({str(r.get(p)) for r in self.rows}) for p in self.params}
        order = sorted(self.params, key=lambda p: (not p.endswith(".name"), -distinct[p], p))
        kept: list[str] = []
        for param in order:
            trial = dataclasses.replace(self, params=[p for p in self.params
                                                      if p in {*kept, param}])
            if len(trial.to_text().splitlines()[1]) <= width:
                kept.append(param)
        # replace keeps the task's metric and throughput columns
        table = dataclasses.replace(self, params=[p for p in self.params if p in kept])
        return table, [p for p in self.params if p not in kept]

    def to_text(self) -> str:
        header = self.columns
        body = [self.cells(r) for r in self.rows]
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
                  for i, h in enumerate(header)]
        numeric = self.numeric

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if h in numeric else c.ljust(w)
                             for c, w, h in zip(cells, widths, header, strict=True)).rstrip()

        lines = [self.title, line(header), line(["-" * w for w in widths])]
        lines += [line(r) for r in body] or ["(no runs)"]
        return "\n".join(lines) + "\n"

    def to_markdown(self) -> str:
        def esc(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        numeric = self.numeric
        lines = [f"### {esc(self.title)}", "",
                 "| " + " | ".join(esc(c) for c in self.columns) + " |",
                 "|" + "|".join("---:" if c in numeric else "---" for c in self.columns) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in self.cells(r)) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """Full precision, one header line, no title (machine-readable)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in self.columns])
        return buf.getvalue()

    def render(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return {"table": self.to_text, "markdown": self.to_markdown, "csv": self.to_csv}[fmt]()


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def task_columns(runs: Sequence[Any]) -> tuple[tuple[str, ...], str, str]:
    """The metric columns and throughput column of the runs' task (``task`` tag; runs logged
    before tasks existed are language models), and which way the first (the ranking) is better,
    as the task declares it.  Runs of different tasks share ``val_loss``."""
    from framework.plugins import load_plugins
    from framework.registry import TASKS
    from framework.tasks.base import DEFAULT_TASK, task_of_run

    names = {task_of_run(getattr(run.data, "tags", {})) for run in runs} or {DEFAULT_TASK}
    if len(names) != 1:
        return ("val_loss",), "per_sec", "minimize"
    (name,) = names
    load_plugins()
    if name not in TASKS:
        return ("val_loss",), "per_sec", "minimize"
    task = TASKS.get(name)
    columns = tuple(task.compare_metrics)
    try:
        better = task.objective_direction(columns[0])
    except RnnlabError:  # a ranking metric that is not an eval objective: lower is better
        better = "minimize"
    return columns, f"{task.unit}_per_sec", better


def _metric(metrics: dict[str, float], key: str) -> float:
    if "best_step" in metrics:  # early stopping restored its best eval: best_<m> are its model's
        from framework.tasks.base import BEST_PREFIX

        metrics = {**metrics, **{k[len(BEST_PREFIX):]: v for k, v in metrics.items()
                                 if k.startswith(BEST_PREFIX)}}
    if key == "bits_per_char" and "val_bits_per_char" not in metrics and "val_loss" in metrics:
        return float(metrics["val_loss"]) / math.log(2)
    value = metrics.get("val_bits_per_char" if key == "bits_per_char" else key)
    return float(value) if value is not None else math.nan


def build_table(runs: Sequence[Any], title: str = "runs",
                params: Sequence[str] | None = None) -> RunTable:
    """Rank MLflow ``Run`` objects by their task's first metric (the one implementation); the
    param columns are ``params``, by default those whose values differ between the runs."""
    params = list(params) if params else differing_params(runs)
    columns, speed_col, better = task_columns(runs)
    rows = []
    for run in runs:
        metrics = run.data.metrics
        # run_chars_per_sec is the whole run's throughput; chars_per_sec the last logging window.
        speed = metrics.get("run_chars_per_sec", metrics.get("chars_per_sec"))
        row: dict[str, Any] = {
            "run": run.info.run_name or "", "run_id": run.info.run_id,
            "status": run.info.status, "val_loss": _metric(metrics, "val_loss"),
            speed_col: float(speed) if speed is not None else None,
            "_start": run.info.start_time or 0,
        }
        row.update({key: _metric(metrics, key) for key in columns})
        row.update({k: run.data.params.get(k) for k in params})
        rows.append(row)
    rank_by = columns[0]
    sign = 1.0 if better == "minimize" else -1.0
    rows.sort(key=lambda r: (not math.isfinite(r[rank_by]),
                             sign * r[rank_by] if math.isfinite(r[rank_by]) else 0.0,
                             r["_start"]))
    for rank, row in enumerate(rows, 1):
        row.pop("_start")
        row["rank"] = rank
    return RunTable(title=title, params=params, rows=rows, metrics=columns, speed=speed_col)


# ------------------------------------------------------------------------------- finding runs
def search_all(client: Any, experiment_ids: list[str], filter_string: str = "") -> list[Any]:
    """Every run matching ``filter_string`` (follows MLflow's pagination)."""
    from mlflow.entities import ViewType

    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string,
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def child_runs(client: Any, parent_run_id: str, experiment_ids: Iterable[str] = (),
               expected: int = 0) -> list[Any]:
    """Runs whose ``mlflow.parentRunId`` is ``parent_run_id``.

    Looked for in ``experiment_ids`` first (children normally share their parent's experiment);
    when fewer than ``expected`` (or none) are found there, in every experiment.
    """
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    ids = list(experiment_ids)
    runs = search_all(client, ids, query) if ids else []
    if not runs or len(runs) < expected:
        runs = search_all(client, [e.experiment_id for e in _all_experiments(client)], query)
    return runs


def _all_experiments(client: Any) -> list[Any]:
    from mlflow.entities import ViewType

    out: list[Any] = []
    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE,
                                         page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def resolve_target(client: Any, target: str) -> tuple[str, list[Any]]:
    """``(title, runs)`` for a parent run id (its children) or an experiment name (its runs)."""
    if _RUN_ID.match(target):
        try:
            parent = client.get_run(target)
        except Exception:
            parent = None
        if parent is not None:
            name = parent.info.run_name or target
            return (f"children of run '{name}' ({target})",
                    child_runs(client, target, [parent.info.experiment_id]))
    experiment = client.get_experiment_by_name(target)
    if experiment is None:
        names = ", ".join(sorted(e.name for e in _all_experiments(client))) or "none"
        raise TrackingError(f"'{target}' is neither an MLflow run id nor an experiment name in "
                            f"{client.tracking_uri} (experiments: {names})")
    runs = search_all(client, [experiment.experiment_id])
    # A sweep's parent holds no training metrics of its own; its children are listed instead.
    runs = [r for r in runs if r.data.tags.get(SWEEP_TAG) != "true"]
    return f"experiment '{target}'", runs


def open_client(tracking_uri: str) -> Any:
    """A client of an existing store (reading must not create an empty sqlite file)."""
    db = _sqlite_path(tracking_uri)
    if db is not None and not db.is_file():  # reading must not create an empty store
        raise TrackingError(f"no MLflow store at {db}; pass --tracking-uri (e.g. "
                            f"sqlite:///path/to/mlflow.db or http://127.0.0.1:5000)")
    return make_client(tracking_uri)


__all__ = ["FORMATS", "PARENT_TAG", "SWEEP_TAG", "RunTable", "build_table", "child_runs",
           "differing_params", "open_client", "resolve_target", "search_all", "task_columns"]
