"""``python -m framework.compare``: rank MLflow runs (a sweep's children, or an experiment's runs).

    python -m framework.compare rnnlab                         # every run of experiment 'rnnlab'
    python -m framework.compare 3f2a...e9 --format markdown    # children of a sweep's parent
    python -m framework.compare rnnlab --format csv --output runs.csv \
        --tracking-uri http://127.0.0.1:5000

Columns: rank, run name, run id, status, the params whose values differ between the runs (tracking
settings ``mlflow.*`` left out), then the final metrics of the runs' task (the task plugin's
``compare_metrics``: for the language model validation loss in nats/char, bits/char and chars/s;
for classification accuracy, macro-F1 and loss; for forecasting RMSE, MAE and the baselines) and
the throughput.  Runs are ranked by the first of those metrics, runs without it last.  The table
and the queries behind it are :mod:`framework.tracking.run_table`, which the sweep summary of
:mod:`framework.sweeps.nested_runs` uses too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from framework.cli.console import ArgumentParser, print_error
from framework.errors import RnnlabError, StorageError, TrackingError
from framework.tracking.run_table import FORMATS, build_table, open_client, resolve_target


# ------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    from framework.tracking.tracker import DEFAULT_TRACKING_URI

    p = ArgumentParser(
        prog="python -m framework.compare",
        description="Rank MLflow runs by their task's first metric: the children of a sweep's "
                    "parent run, or every run of an experiment. Options also take the key=value "
                    "spelling of the other commands: experiment=NAME or run_id=ID, "
                    "mlflow.tracking_uri=URI, format=, output=, params=[a,b].")
    p.add_argument("target", help="an experiment name, or the run id of a sweep's parent run")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (terminal, default), markdown or csv")
    p.add_argument("--output", "-o", type=Path, default=None,
                   help="write the table to this file instead of standard output")
    p.add_argument("--params", nargs="+", default=None, metavar="KEY",
                   help="the param columns to show (default: those that vary; in a terminal as "
                        "many as fit its width)")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI")
                   or DEFAULT_TRACKING_URI,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                        f"{DEFAULT_TRACKING_URI})")
    return p


def by_task_and_dataset(runs: Sequence[Any]) -> dict[tuple[str, str], list[Any]]:
    """Runs grouped by their task and dataset tags, in the order of each group's first run:
    a classifier's loss and a character model's nats/char are not ranked together."""
    from framework.tasks.base import task_of_run

    groups: dict[tuple[str, str], list[Any]] = {}
    for run in runs:
        tags = getattr(run.data, "tags", {}) or {}
        groups.setdefault((task_of_run(tags), str(tags.get("dataset", "?"))), []).append(run)
    return groups


# The key=value spelling every other command takes, and the option each one stands for.
KEY_VALUE = {"mlflow.tracking_uri": "--tracking-uri", "format": "--format", "output": "--output",
             "params": "--params"}
TARGET_KEYS = ("experiment", "mlflow.experiment_name", "run_id")


def key_value_args(argv: Sequence[str]) -> list[str]:
    """``mlflow.tracking_uri=...``, ``format=``, ``output=``, ``params=[a,b]`` and
    ``experiment=``/``mlflow.experiment_name=``/``run_id=`` (the target) as this command's
    options, so that it takes the same spelling as the others; flags pass unchanged."""
    out: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in KEY_VALUE:
            values = ([v for v in value.strip("[]").split(",") if v] if key == "params"
                      else [value])
            out += [KEY_VALUE[key], *values]
        elif sep and key in TARGET_KEYS:
            out.append(value)
        else:
            out.append(arg)
    return out


def _check_output(path: Path) -> None:
    """``--output`` checked before the store is read: not a folder, not under a file."""
    if path.is_dir():
        raise StorageError(f"cannot write {path}: it is a folder; name a file in it, e.g. "
                           f"--output {path / 'runs.csv'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StorageError(f"cannot write {path}: {parent} is a file, not a folder; "
                                   f"fix --output")
            return


def _write_output(path: Path, text: str) -> None:
    """Write the table to ``path``; a named pipe nobody reads is refused at once instead of
    blocking (``--output /dev/stdout`` into a pipe still works)."""
    import errno
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise StorageError(f"cannot write {path}: it is a named pipe (FIFO) that no process "
                               f"reads; fix --output") from None
        raise
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(key_value_args(argv))
    try:
        if args.output is not None:
            _check_output(args.output)  # before the store is read
        client = open_client(args.tracking_uri)
        title, runs = resolve_target(client, args.target)
        if args.params:
            unknown = sorted(set(args.params) - {k for r in runs for k in r.data.params})
            if unknown:
                raise TrackingError(f"no run has the param(s) {', '.join(unknown)}; "
                                    f"--format csv lists the params that vary")
        texts = []
        groups = by_task_and_dataset(runs)
        for (task, dataset), group in groups.items():
            name = title if len(groups) == 1 else f"{title}: task {task}, dataset {dataset}"
            table = build_table(group, name, params=args.params)
            if args.format == "table" and args.output is None and not args.params:
                table, hidden = table.fitted(shutil.get_terminal_size((160, 24)).columns)
                if hidden:
                    table.title += (f" ({len(hidden)} more params vary and are not shown; "
                                    f"--format csv shows them all, --params picks columns)")
            texts.append(table.render(args.format))
        text = "\n".join(texts)
        if args.output is not None:
            _write_output(args.output, text)
            print(f"wrote {len(runs)} runs to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except RnnlabError as exc:
        print_error(exc)
        return exc.exit_code
    except OSError as exc:
        print_error(f"cannot write {args.output}: {exc.strerror}")
        return 2
    return 0

