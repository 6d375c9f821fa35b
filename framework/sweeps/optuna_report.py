"""A study's summary for the sweep's parent MLflow run: best trial, history, importances, trials.

The sweeper writes the files into the sweep dir when it ends (:func:`write_study_files`); the
sweep callback logs them to the parent run (:func:`log_study`), next to its own summary table.
Plots are Optuna's own matplotlib ones, drawn on the Agg backend; parameter importances are
``optuna.importance.get_param_importances`` (Optuna's default evaluator).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

RESULTS_FILE = "optimization_results.yaml"  # the name hydra-optuna-sweeper used
HISTORY_PLOT = "optuna_history.png"
INTERMEDIATE_PLOT = "optuna_intermediate_values.png"
IMPORTANCE_FILE = "optuna_importance"  # .md and .csv
TRIALS_FILE = "optuna_trials"  # .md and .csv

log = logging.getLogger("rnnlab.optuna")


def _best(study: Any) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no completed trial
        return None


def _save_axes(axes: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _plots(study: Any, sweep_dir: Path) -> list[str]:
    import matplotlib

    # Optuna draws through pyplot; the sweeper is a command-line process without a display.
    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as optuna_plots

    made = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    reported = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        try:
            if complete:
                _save_axes(optuna_plots.plot_optimization_history(study), sweep_dir / HISTORY_PLOT)
                made.append(HISTORY_PLOT)
            if reported:
                _save_axes(optuna_plots.plot_intermediate_values(study),
                           sweep_dir / INTERMEDIATE_PLOT)
                made.append(INTERMEDIATE_PLOT)
        except Exception as exc:  # a plot must never cost the study's results
            log.warning("Optuna plot failed: %s: %s", type(exc).__name__, exc)
    return made


def param_importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances, or {} while they cannot be computed (fewer than two
    completed trials, or nothing varied)."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except Exception as exc:
        log.warning("Optuna parameter importances failed: %s: %s", type(exc).__name__, exc)
        return {}


def _table(header: list[str], rows: list[list[Any]]) -> tuple[str, str]:
    """(markdown, csv) of one table."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}" if math.isfinite(value) else ""
        return "" if value is None else str(value).replace("|", "\\|")

    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return "\n".join(md) + "\n", out.getvalue()


def trials_table(study: Any, run_ids: dict[int, str] | None = None) -> tuple[str, str]:
    """Every trial of the study: number, state, value, last reported step, params, MLflow run."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    run_ids = run_ids or {}
    header = ["trial", "state", "value", "last_step", *names, "run_id"]
    rows = [[t.number, t.state.name, t.value, t.last_step, *(t.params.get(k) for k in names),
             run_ids.get(t.number)] for t in trials]
    return _table(header, rows)


def write_study_files(study: Any, sweep_dir: Path, *, storage: str, pruner: dict[str, Any],
                      asked: list[int]) -> Path:
    """Write the study's results, plots and tables into ``sweep_dir``; returns the results file.

    ``storage`` is the storage as it may be shown (password masked); ``asked`` the numbers of
    the trials this invocation ran.
    """
    trials = study.get_trials(deepcopy=False)
    best = _best(study)
    importances = param_importances(study)
    results: dict[str, Any] = {
        "name": "optuna", "study_name": study.study_name, "storage": storage,
        "direction": study.direction.name.lower(), "pruner": dict(pruner),
        "trials": dict(sorted(Counter(t.state.name for t in trials).items())),
        "this_invocation": list(asked),
        "best_trial": best.number if best is not None else None,
        "best_value": float(best.value) if best is not None else None,
        "best_params": dict(best.params) if best is not None else {},
        "param_importances": importances,
    }
    path = sweep_dir / RESULTS_FILE
    OmegaConf.save(OmegaConf.create(results), path)
    md, text = _table(["param", "importance"], [[k, v] for k, v in importances.items()])
    (sweep_dir / f"{IMPORTANCE_FILE}.md").write_text(md)
    (sweep_dir / f"{IMPORTANCE_FILE}.csv").write_text(text)
    md, text = trials_table(study)
    (sweep_dir / f"{TRIALS_FILE}.csv").write_text(text)
    _plots(study, sweep_dir)
    return path


def _trial_runs(tracker: Any, study_name: str, children: list[Any]) -> dict[int, str]:
    """Trial number -> MLflow run id: this sweep's children, then other runs of the study in
    the same experiment (earlier invocations, other workers)."""
    from framework.tracking.run_info import OPTUNA_STUDY_TAG, OPTUNA_TRIAL_TAG
    from framework.tracking.run_table import search_all

    runs: dict[int, str] = {}
    name = study_name.replace(chr(39), '')
    others = []
    # Trials tag their runs (older rnnlab logged the same as params optuna.trial/study_name).
    for query in (f"tags.`{OPTUNA_STUDY_TAG}` = '{name}'",
                  f"params.`optuna.study_name` = '{name}'"):
        try:
            others += search_all(tracker.client, [tracker.experiment_id], query)
        except Exception:  # a store that cannot filter: this sweep's children still count
            pass
    for run in [*others, *children]:
        number = run.data.tags.get(OPTUNA_TRIAL_TAG, run.data.params.get("optuna.trial"))
        if number not in (None, "None"):
            runs[int(number)] = run.info.run_id
    return runs


def log_study(tracker: Any, sweep_dir: Path, children: list[Any]) -> dict[str, float]:
    """Log the study's files in ``sweep_dir`` to the parent run; returns metrics to add to it.

    Params: ``optuna.study``, ``optuna.storage``, ``optuna.pruner``, ``best.<key>``; artifacts:
    the results file, the plots, the importance table, the trials table (with each trial's run
    id). Nothing happens when the sweep was not an Optuna study.
    """
    from mlflow.entities import Param

    path = sweep_dir / RESULTS_FILE
    if not path.is_file():
        return {}
    results = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    params = {f"best.{k}": v for k, v in (results.get("best_params") or {}).items()}
    runs: dict[int, str] = {}
    if results.get("study_name") is not None:  # written by rnnlab's sweeper
        params.update({"optuna.study": results["study_name"],
                       "optuna.storage": results.get("storage"),
                       "optuna.pruner": json.dumps(results.get("pruner"), sort_keys=True)})
        runs = _trial_runs(tracker, str(results["study_name"]), children)
        md, text = _trials_with_runs(sweep_dir, runs)
        for fmt, body in (("md", md), ("csv", text)):
            (sweep_dir / f"{TRIALS_FILE}.{fmt}").write_text(body)
    if params:
        tracker.client.log_batch(tracker.run_id, params=[Param(k, str(v)[:6000])
                                                         for k, v in params.items()])
    for name in (RESULTS_FILE, HISTORY_PLOT, INTERMEDIATE_PLOT, f"{IMPORTANCE_FILE}.md",
                 f"{IMPORTANCE_FILE}.csv", f"{TRIALS_FILE}.md", f"{TRIALS_FILE}.csv"):
        if (sweep_dir / name).is_file():
            tracker.log_artifact(str(sweep_dir / name))
    metrics: dict[str, float] = {}
    if results.get("best_value") is not None:
        metrics["optuna_best_value"] = float(results["best_value"])
    if results.get("best_trial") is not None:
        metrics["optuna_best_trial"] = float(results["best_trial"])
    for state, count in (results.get("trials") or {}).items():
        metrics[f"optuna_trials_{str(state).lower()}"] = float(count)
    best = results.get("best_trial")
    if best in runs:
        tracker.set_tags({"rnnlab.optuna_best_run_id": runs[best]})
    return metrics


def _trials_with_runs(sweep_dir: Path, runs: dict[int, str]) -> tuple[str, str]:
    """The sweeper's trials table (csv) with the run id of each trial filled in."""
    path = sweep_dir / f"{TRIALS_FILE}.csv"
    rows = list(csv.reader(path.read_text().splitlines())) if path.is_file() else []
    if not rows:
        return "", ""
    header, body = rows[0], rows[1:]
    for row in body:
        if row and row[0].isdigit() and int(row[0]) in runs:
            row[-1] = runs[int(row[0])]
    return _table(header, [[_number(v) for v in row] for row in body])


def _number(text: str) -> Any:
    """A csv cell back as a float when it holds a non-integer number (for 6-digit display)."""
    if text.isdigit() or text.lstrip("-").isdigit():
        return text
    try:
        return float(text)
    except ValueError:
        return text


__all__ = ["log_study", "param_importances", "trials_table", "write_study_files"]
