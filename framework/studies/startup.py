"""How fast the commands start: whole-process times of the everyday commands, as a table.

    python -m framework.studies.startup [--repeats 5] [--markdown] [--against DIR]

Every command runs in a fresh process (start-up is mostly imports, so every repeat starts cold),
interleaved round by round so that a busy machine slows all rows alike:

* ``python -m framework --help``;
* ``python -m framework.generate`` and ``python -m framework.predict`` from a local checkpoint
  (a language model and a forecaster, trained once here for a step);
* a one-step training run untracked, and tracked (a sqlite store created beforehand) twice: with
  the spare helper the previous tracked run left (the usual case,
  :mod:`framework.tracking.spare`), and with a fresh helper (``RNNLAB_SPARE_HELPER=0``: the
  first tracked run after a while). Their differences from the untracked run are what tracking
  adds to a short job. After each spare-helper run the benchmark waits a few seconds, while the
  spare that run left imports MLflow, so that those imports do not slow the next command.

The table gives the median and the fastest wall time of each row, the median CPU time (user +
system of the process and its children, which a loaded machine inflates much less; a spare
helper is not a child of the command it serves, so its CPU is not in the spare-helper row), and
the goal of the row. The last rows are what tracking adds to the one-step run: the median over
the rounds of (tracked - untracked).

``--against DIR`` times another checkout of rnnlab (its ``framework/``, ``cells/`` and ``conf/``,
put first on ``PYTHONPATH``; the same Python and packages) in the same rounds, each command right
after this checkout's: its rows end in ``[DIR's name]``. That is the before/after comparison of a
change on a shared machine.

The commands run with their bytecode cached, as an installed rnnlab's are:
``PYTHONDONTWRITEBYTECODE`` is dropped from their environment (otherwise every start compiles
every module again).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framework import ROOT
from framework.tracking.spare import IDLE_ENV, stop_spares

QUIET = ["hydra.job_logging.root.level=WARNING", "train.progress=never", "train.sample_every=0"]
ONE_STEP = ["cell=rnn", "dataset=dinos", "cell.hidden_size=16", "train.steps=1", *QUIET]
UNTRACKED = "1-step run, untracked"
TRACKED = "1-step run, tracked, spare helper"  # the usual case: a tracked job ran before
FRESH = "1-step run, tracked, fresh helper"  # the first tracked job (RNNLAB_SPARE_HELPER=0)
TRACKING_ADDS = "tracking adds (spare helper)"
FRESH_ADDS = "tracking adds (fresh helper)"
SETTLE = 3.0  # seconds after a tracked run: its spare's imports would slow the next command
# Whole-process wall-time goals (seconds) on the 2-core machine, quiet.
GOALS = {"--help": 0.5, "generate (local checkpoint)": 0.5,
         "predict (forecaster checkpoint)": 0.5, TRACKING_ADDS: 1.0}


def _run(args: list[str], cwd: Path, tree: Path | None = None,
         spare: bool = True) -> tuple[float, float]:
    """Wall and CPU seconds of one command (CPU from the children's rusage); ``tree``: the
    rnnlab checkout to run instead of this one; ``spare``: spare helpers on (the default) or
    off. Spare helpers live in ``cwd`` (the benchmark's temporary folder), apart from the
    user's own."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TMPDIR": str(cwd)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop(IDLE_ENV, None)
    if not spare:
        env[IDLE_ENV] = "0"
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"startup benchmark: {' '.join(args)} failed: "
                         f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _checkpoint(cwd: Path, extra: list[str]) -> Path:
    _run(["-m", "framework", *extra, "mlflow.enabled=false", f"hydra.run.dir={cwd / 'run'}"],
         cwd)
    path = cwd / "run" / "checkpoints" / "latest.npz"
    if not path.is_file():
        raise SystemExit(f"startup benchmark: no checkpoint at {path}")
    return path


def commands(work: Path) -> dict[str, list[str]]:
    lm = _checkpoint(work / "text_model", ONE_STEP)
    forecaster = _checkpoint(work / "series_model", ["task=forecast", "dataset=sunspots",
                                                 "cell.hidden_size=8", "train.steps=1", *QUIET])
    store = work / "mlflow.db"
    tracked = ["-m", "framework", *ONE_STEP, f"mlflow.tracking_uri=sqlite:///{store}"]
    _run(tracked, work)  # creates the store (a first job on a fresh store pays that once) and
    # leaves the first spare helper; each tracked job with a spare leaves the next one
    history = "history=[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]"
    return {  # the names UNTRACKED and TRACKED are the rows of what tracking adds
        "--help": ["-m", "framework", "--help"],
        "generate (local checkpoint)": ["-m", "framework.generate", f"checkpoint={lm}",
                                        "num_samples=3"],
        "predict (forecaster checkpoint)": ["-m", "framework.predict",
                                            f"checkpoint={forecaster}", history],
        UNTRACKED: ["-m", "framework", *ONE_STEP, "mlflow.enabled=false"],
        FRESH: tracked,
        TRACKED: tracked,
    }


def measure(repeats: int, against: Path | None = None
            ) -> list[tuple[str, list[float], list[float]]]:
    """Rows of (name, wall times, CPU times), one time per round; with ``against``, every row
    of that checkout too (named with its folder's name in brackets) right after this one's."""
    trees: dict[str, Path | None] = {"": None}
    if against is not None:
        trees[f" [{against.resolve().name}]"] = against.resolve()
    with tempfile.TemporaryDirectory(prefix="rnnlab-startup-") as tmp:
        work = Path(tmp)
        for sub in ("text_model", "series_model"):
            (work / sub).mkdir()
        rows = commands(work)
        walls: dict[str, list[float]] = {name + tag: [] for name in rows for tag in trees}
        cpus: dict[str, list[float]] = {name + tag: [] for name in rows for tag in trees}
        for _ in range(repeats):  # interleaved rounds
            for name, args in rows.items():
                for tag, tree in trees.items():
                    wall, cpu = _run(args, work, tree, spare=name != FRESH)
                    walls[name + tag].append(wall)
                    cpus[name + tag].append(cpu)
                    if name == TRACKED and tree is None:
                        time.sleep(SETTLE)  # the spare it left imports MLflow meanwhile
        stop_spares(work, settle=1.0)  # the last tracked job's spare is starting
    results = []
    for tag in trees:
        results += [(name + tag, walls[name + tag], cpus[name + tag]) for name in rows]
        results += [tracking_cost(walls, cpus, FRESH_ADDS, FRESH, tag),
                    tracking_cost(walls, cpus, TRACKING_ADDS, TRACKED, tag)]
    return results


def tracking_cost(walls: dict[str, list[float]], cpus: dict[str, list[float]], name: str,
                  tracked: str, tag: str = "") -> tuple[str, list[float], list[float]]:
    """The row ``name`` of what tracking adds: per round, the ``tracked`` row's time minus the
    untracked one's (wall and CPU)."""
    tracked, untracked = tracked + tag, UNTRACKED + tag
    return (name + tag,
            [t - u for t, u in zip(walls[tracked], walls[untracked], strict=True)],
            [t - u for t, u in zip(cpus[tracked], cpus[untracked], strict=True)])


def _goal(name: str) -> str:
    base = name.split(" [", 1)[0]
    return f"< {GOALS[base]:.2f}" if base in GOALS else ""


def table(results: list[tuple[str, list[float], list[float]]], markdown: bool) -> str:
    head = ("command", "median wall s", "fastest wall s", "median CPU s", "goal (wall)")
    rows = [(name, f"{statistics.median(w):.2f}", f"{min(w):.2f}", f"{statistics.median(c):.2f}",
             _goal(name)) for name, w, c in results]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in [head, *rows])


def main(argv: list[str] | None = None) -> None:
    from framework.cli.console import ArgumentParser

    parser = ArgumentParser(prog="python -m framework.studies.startup", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="also time this other rnnlab checkout, interleaved")
    args = parser.parse_args(argv)
    if args.against is not None and not (args.against / "framework" / "__init__.py").is_file():
        parser.error(f"--against {args.against}: not an rnnlab checkout (no framework/ there)")
    os.chdir(ROOT)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"{args.repeats} interleaved rounds", flush=True)
    print(table(measure(max(1, args.repeats), args.against), args.markdown))


if __name__ == "__main__":
    main()
