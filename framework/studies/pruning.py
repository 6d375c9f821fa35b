"""Pruning benchmark: one Optuna study run with and without pruning, on a fixed space and budget.

    python -m framework.studies.pruning [--trials 16] [--steps 300] [--pruner median] [--markdown]

Both studies run through the real command line (``python -m framework -m hydra/sweeper=optuna``,
basic launcher, jobs in the sweeper's process) on the dinosaur names, with the same search space,
sampler seed and number of trials; only ``hydra/sweeper/pruner`` differs. MLflow is off so that
the wall time is the study's, not the tracking store's. The table gives, per study, the best
objective (final validation loss, nats/char), the training steps all trials ran together (from
the study's storage: a trial reports at every eval, so its last reported step is where it
stopped), the trials pruned, the wall time and the CPU time of the study's process (the one to
compare on a machine shared with other work). "Noise" is the spread of the no-pruning best
configuration trained with other model seeds: a pruned study whose best lies within it found an
equally good configuration.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from framework import ROOT

SPACE = {
    "optimizer.lr": "tag(log, interval(0.0003, 0.1))",
    "cell.hidden_size": "choice(16, 32, 64, 128)",
    "train.batch_size": "choice(16, 32, 64)",
}
# The pruners' own defaults (conf/hydra/sweeper/pruner/) first judge a trial at its second eval;
# the median and percentile pruners start after 3 completed trials instead of 5.
PRUNER_OPTIONS = {
    "median": ["hydra.sweeper.pruner.n_startup_trials=3"],
    "percentile": ["hydra.sweeper.pruner.n_startup_trials=3"],
    "successive_halving": [],
    "hyperband": [],
}


def study_command(*, storage: str, name: str, pruner: str, trials: int, steps: int,
                  eval_every: int, seed: int) -> list[str]:
    """The command line of one study (the one a user would type, plus the fixed budget)."""
    options = PRUNER_OPTIONS.get(pruner, [])
    space = [f"{key}={value}" for key, value in SPACE.items()]
    return [sys.executable, "-m", "framework", "-m", "hydra/sweeper=optuna",
            f"hydra/sweeper/pruner={pruner}", *options, *space,
            f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={name}",
            f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.sampler.seed={seed}",
            "hydra.sweeper.sampler.n_startup_trials=5",
            "dataset=dinos", f"train.steps={steps}", f"train.eval_every={eval_every}",
            "train.sample_every=0", "train.checkpoint_every=0", "train.progress=never",
            "mlflow.enabled=false", "hydra.job_logging.root.level=WARNING",
            "hydra.sweep.dir=multirun/" + name]


def run_study(workdir: Path, pruner: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one study in ``workdir``; its numbers from the storage."""
    import optuna

    storage = f"sqlite:///{workdir / 'optuna.db'}"
    name = f"pruning-{pruner}"
    cmd = study_command(storage=storage, name=name, pruner=pruner, trials=args.trials,
                        steps=args.steps, eval_every=args.eval_every, seed=args.seed)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"study {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    steps = sum((t.last_step + 1) if t.last_step is not None else 0 for t in trials)
    best = study.best_trial
    return {"pruner": pruner, "best": float(best.value), "best_params": dict(best.params),
            "steps": steps, "trials": len(trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "failed": sum(t.state.name == "FAIL" for t in trials), "wall": wall, "cpu": cpu}


def _children_cpu() -> float:
    """CPU seconds used so far by finished child processes (robust to a busy machine)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def seed_noise(workdir: Path, params: dict[str, Any], args: argparse.Namespace) -> list[float]:
    """Final validation loss of one configuration trained with model seeds 0..N-1 (0: the
    study's own, which must reproduce the study's value)."""
    overrides = [f"{key}={value}" for key, value in params.items()]
    cmd = [sys.executable, "-m", "framework", "-m", "dataset=dinos", *overrides,
           f"seed={','.join(str(s) for s in range(args.noise_seeds))}",
           f"train.steps={args.steps}", f"train.eval_every={args.eval_every}",
           "train.sample_every=0", "train.checkpoint_every=0", "train.progress=never",
           "mlflow.enabled=false", "hydra.sweep.dir=multirun/noise"]
    proc = subprocess.run(cmd, cwd=workdir, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"noise runs failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [float(line.split("val loss ")[1].split()[0]) for line in proc.stdout.splitlines()
            if line.startswith("done:")]


def table(rows: list[dict[str, Any]], markdown: bool) -> str:
    header = ["pruner", "best val_loss", "total steps", "steps vs none", "trials pruned",
              "wall time", "CPU time"]
    base = rows[0]["steps"]
    cells = [[r["pruner"], f"{r['best']:.4f}", f"{r['steps']:,}", f"{r['steps'] / base:.0%}",
              f"{r['pruned']}/{r['trials']}", f"{r['wall']:.0f} s", f"{r['cpu']:.0f} s"]
             for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*c) for c in cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framework.studies.pruning",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300, help="training steps per trial")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--pruner", nargs="+", default=["median"],
                        choices=sorted(PRUNER_OPTIONS), help="pruners to compare with none")
    parser.add_argument("--seed", type=int, default=1234, help="the sampler's seed")
    parser.add_argument("--noise-seeds", type=int, default=4,
                        help="model seeds the best no-pruning configuration is trained with")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the studies here (default: a temporary directory)")
    args = parser.parse_args(argv)
    os.environ.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory(prefix="rnnlab-pruning-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        rows = [run_study(workdir, "none", args)]
        for pruner in args.pruner:
            rows.append(run_study(workdir, pruner, args))
        noise = seed_noise(workdir, rows[0]["best_params"], args) if args.noise_seeds else []
    print(f"dinos, {args.trials} trials x {args.steps} steps (eval every {args.eval_every}), "
          f"TPE seed {args.seed}, space: " + ", ".join(f"{k} {v}" for k, v in SPACE.items()))
    print(table(rows, args.markdown))
    if noise:
        spread = max(noise) - min(noise)
        sd = statistics.stdev(noise) if len(noise) > 1 else math.nan
        print(f"noise: the no-pruning best configuration {rows[0]['best_params']} trained with "
              f"model seeds 0..{len(noise) - 1}: " + ", ".join(f"{v:.4f}" for v in noise)
              + f" (spread {spread:.4f}, sd {sd:.4f})")
    for row in rows[1:]:
        print(f"{row['pruner']}: best {row['best'] - rows[0]['best']:+.4f} nats/char vs none, "
              f"{row['steps'] / rows[0]['steps']:.0%} of its steps; best params "
              f"{row['best_params']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
