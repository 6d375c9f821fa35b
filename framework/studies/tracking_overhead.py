"""Where MLflow tracking spends a short job's time: a table of phases and the end-to-end overhead.

    python -m framework.studies.tracking_overhead [--steps 200] [--repeats 3] [--markdown]

Two measurements, each in fresh processes (imports are a large part of the cost, so every
repeat starts cold), on the default job (LSTM 128, dinos) and a sqlite store in a temp dir:

* **end to end**: ``python -m framework train.steps=N`` with ``mlflow.enabled=false`` and with
  tracking on, interleaved, median wall and CPU time of each; the overhead is their difference.
  The store is created by a first tracked job (timed on its own row): a sweep's parent does that
  once for all its jobs.
* **phases**: two jobs run one after another in one fresh process (``framework.cli.train.run``),
  with ``import mlflow``, every tracker method and the steps of model logging timed (time goes to
  the innermost timed call, so the rows add up to the tracking total), and the same two jobs with
  tracking off. The first job pays the imports; the next one is what a sweep's reused worker
  process pays (basic launcher, joblib, Ray). The loss-curve figure is drawn with tracking off too.

Wall times depend on the machine's load (the table says how many cores were busy); CPU time
(process time, all threads) much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from framework import ROOT

QUIET = ["hydra.job_logging.root.level=WARNING", "train.progress=never"]
NOT_TRACKING = ("loss-curve figure",)  # drawn whether or not tracking is on


def job_overrides(steps: int, store: Path) -> list[str]:
    return [f"train.steps={steps}", f"mlflow.tracking_uri=sqlite:///{store}", *QUIET]


# ------------------------------------------------------------------------------ phase child
class Timers:
    """Exclusive wall and CPU time per name (a timed call inside another is not counted twice)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._stack: list[list[float]] = []  # [wall, cpu] of timed calls nested in each open one

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([0.0, 0.0])
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                inner_wall, inner_cpu = self._stack.pop()
                self.add(name, wall - inner_wall, cpu - inner_cpu)
                if self._stack:
                    self._stack[-1][0] += wall
                    self._stack[-1][1] += cpu
        return timed

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _timed_import(timers: Timers, name: str, module: str) -> None:
    import importlib

    w0, c0 = _clock()
    importlib.import_module(module)
    timers.add(name, time.perf_counter() - w0, time.process_time() - c0)


def phase_child(steps: int, store: Path, enabled: bool, jobs: int) -> list[dict[str, Any]]:
    """Run ``jobs`` jobs one after another in this (fresh) process, their tracking calls timed.

    The first job pays the imports; the next ones are what a sweep's reused worker process pays
    (the basic launcher, joblib's workers, Ray's workers).
    """
    timers = Timers()
    if enabled:
        _timed_import(timers, "import mlflow", "mlflow")
        # framework.tracking.pyfunc (mlflow.pyfunc, pandas) is imported by the first log_model call.
        _timed_import(timers, "import mlflow.pyfunc (model logging)",
                      "framework.tracking.pyfunc")
        _instrument(timers)
    from omegaconf import OmegaConf

    from framework.cli import train as app

    overrides = job_overrides(steps, store) + ([] if enabled else ["mlflow.enabled=false"])
    results = []
    for _ in range(jobs):
        cfg = _compose(overrides)
        out = Path(tempfile.mkdtemp(prefix="rnnlab-trackbench-"))
        hydra_dir = out / ".hydra"  # what Hydra writes for a real job, logged by _finish
        hydra_dir.mkdir()
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            OmegaConf.save(cfg, hydra_dir / name)
        os.chdir(out)
        w_job, c_job = _clock()
        app.run(cfg)
        results.append({"wall": dict(timers.wall), "cpu": dict(timers.cpu),
                        "job_wall": time.perf_counter() - w_job,
                        "job_cpu": time.process_time() - c_job})
        timers.wall.clear()
        timers.cpu.clear()
    return results


def _instrument(timers: Timers) -> None:
    import mlflow.utils.environment as mlflow_env

    from framework.tracking import plots, pyfunc
    from framework.tracking import tracker as tracking
    from framework.tracking.protocol import tracker_calls

    tracker_cls = tracking.MlflowTracker
    for method in tracker_calls():  # each call the job makes becomes a row of the phase table
        setattr(tracker_cls, method, timers.wrap(method, getattr(tracker_cls, method)))
    tracking.make_client = timers.wrap("open store (make_client)", tracking.make_client)
    tracking.git_commit = timers.wrap("git commit (start)", tracking.git_commit)
    pyfunc._code_paths = timers.wrap("model: code_paths", pyfunc._code_paths)
    pyfunc.save_pyfunc_model = timers.wrap("model: save_model", pyfunc.save_pyfunc_model)
    if hasattr(mlflow_env, "warn_dependency_requirement_mismatches"):
        mlflow_env.warn_dependency_requirement_mismatches = timers.wrap(
            "model: requirements check", mlflow_env.warn_dependency_requirement_mismatches)
    plots.loss_curve_figure = timers.wrap("loss-curve figure", plots.loss_curve_figure)


def _compose(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    from framework.cli.overrides import store_plugin_configs

    store_plugin_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


# ----------------------------------------------------------------------------------- parent
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("RNNLAB_PARENT_RUN_ID", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _cli_job(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one ``python -m framework`` job in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "framework", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - w0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"tracking_overhead: job failed: {proc.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def end_to_end(steps: int, repeats: int, work: Path) -> dict[str, list[tuple[float, float]]]:
    store = work / "mlflow.db"
    base = job_overrides(steps, store)
    results: dict[str, list[tuple[float, float]]] = {"fresh": [], "off": [], "on": []}
    results["fresh"].append(_cli_job(base, work))  # creates the store's schema
    for _ in range(repeats):  # interleaved: a load change hits both alike
        results["off"].append(_cli_job([*base, "mlflow.enabled=false"], work))
        results["on"].append(_cli_job(base, work))
    return results


def in_process(steps: int, repeats: int, work: Path, enabled: bool) -> list[list[dict[str, Any]]]:
    """``repeats`` fresh processes, each running two jobs (see :func:`phase_child`)."""
    store = work / "mlflow.db"  # already created by end_to_end
    runs = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-m", "framework.studies.tracking_overhead",
                               "--child", str(steps), str(store), str(int(enabled))],
                              cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"tracking_overhead: in-process run failed: {proc.stderr[-2000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return runs


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(rows: list[tuple[str, ...]], header: tuple[str, ...], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*r) for r in rows)])


def phase_table(on: list[list[dict[str, Any]]], off: list[list[dict[str, Any]]],
                markdown: bool) -> str:
    """Rows: phases (first job of a process, next job), then the jobs' totals and overheads."""
    def med(job: int, key: str, name: str | None = None) -> float:
        if name is None:
            return _median([r[job][key] for r in on])
        return _median([r[job][key].get(name, 0.0) for r in on])

    names = sorted({n for r in on for job in r for n in job["wall"]},
                   key=lambda n: -(med(0, "wall", n) + med(1, "wall", n)))
    rows = []
    totals = [0.0, 0.0, 0.0, 0.0]
    for name in names:
        values = [med(0, "wall", name), med(0, "cpu", name), med(1, "wall", name),
                  med(1, "cpu", name)]
        if name in NOT_TRACKING:
            name += " (not tracking)"
        else:
            totals = [t + v for t, v in zip(totals, values, strict=True)]
        rows.append((name, *(f"{v:.3f}" for v in values)))
    rows.append(("tracking total (sum of the rows above)", *(f"{v:.3f}" for v in totals)))
    job_on = [med(0, "job_wall"), med(0, "job_cpu"), med(1, "job_wall"), med(1, "job_cpu")]
    job_off = [_median([r[j][k] for r in off]) for j in (0, 1) for k in ("job_wall", "job_cpu")]
    rows.append(("job, tracking on (app.run)", *(f"{v:.3f}" for v in job_on)))
    rows.append(("job, mlflow.enabled=false (app.run)", *(f"{v:.3f}" for v in job_off)))
    rows.append(("overhead of tracking (difference)",
                 *(f"{a - b:.3f}" for a, b in zip(job_on, job_off, strict=True))))
    header = ("phase (in-process)", "1st job wall s", "cpu s", "next job wall s", "cpu s")
    return render(rows, header, markdown)


def end_to_end_table(results: dict[str, list[tuple[float, float]]], markdown: bool) -> str:
    med = {k: (_median([w for w, _ in v]), _median([c for _, c in v])) for k, v in results.items()}
    rows = [("mlflow.enabled=false", *(f"{x:.2f}" for x in med["off"])),
            ("tracking on (existing store)", *(f"{x:.2f}" for x in med["on"])),
            ("tracking on, first job (creates the store)", *(f"{x:.2f}" for x in med["fresh"])),
            ("overhead of tracking", f"{med['on'][0] - med['off'][0]:.2f}",
             f"{med['on'][1] - med['off'][1]:.2f}")]
    return render(rows, ("python -m framework", "wall s", "cpu s"), markdown)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m framework.studies.tracking_overhead",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        steps, store, enabled = args.child
        print(json.dumps(phase_child(int(steps), Path(store), enabled == "1", jobs=2)))
        return
    with tempfile.TemporaryDirectory(prefix="rnnlab-trackbench-") as tmp:
        work = Path(tmp)
        load = os.getloadavg()[0]
        results = end_to_end(args.steps, args.repeats, work)
        on = in_process(args.steps, args.repeats, work, enabled=True)
        off = in_process(args.steps, args.repeats, work, enabled=False)
    print(f"{args.steps}-step job (LSTM 128, dinos), median of {args.repeats}, fresh process "
          f"each; sqlite store; {os.cpu_count()} cores, load average {load:.1f} at the start")
    print()
    print(end_to_end_table(results, args.markdown))
    print()
    print(phase_table(on, off, args.markdown))


if __name__ == "__main__":
    main()
