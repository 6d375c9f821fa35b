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

from framework.cli.console import ArgumentParser, print_error
from framework.errors import RnnlabError, TrackingError
from framework.tracking.run_table import FORMATS, build_table, open_client, resolve_target


# ------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    from framework.tracking.tracker import DEFAULT_TRACKING_URI

    p = ArgumentParser(
        prog="python -m framework.compare",
        description="Rank MLflow runs by final validation loss: the children of a sweep's parent "
                    "run, or every run of an experiment.")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        client = open_client(args.tracking_uri)
        title, runs = resolve_target(client, args.target)
        if args.params:
            unknown = sorted(set(args.params) - {k for r in runs for k in r.data.params})
            if unknown:
                raise TrackingError(f"no run has the param(s) {', '.join(unknown)}; "
                                    f"--format csv lists the params that vary")
        table = build_table(runs, title, params=args.params)
        if args.format == "table" and args.output is None and not args.params:
            table, hidden = table.fitted(shutil.get_terminal_size((160, 24)).columns)
            if hidden:
                table.title += (f" ({len(hidden)} more params vary and are not shown; "
                                f"--format csv shows them all, --params picks columns)")
        text = table.render(args.format)
        if args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text)
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

