"""Training-throughput benchmark: rnnlab vs the course-style loop, PyTorch and the GEMM bound.

    python -m framework.bench [--quick] [--threads N] [--markdown] [--cells lstm ...]

For every cell x hidden x batch (tiny-shakespeare, float32, seq 25) it reports training chars/s
(forward + backward + clip + Adam) of

* rnnlab through the real trainer: a :class:`~framework.training.trainer.Trainer` built from config,
  stepped with :meth:`Trainer.train_step`, the step ``Trainer.run`` calls (feed batch,
  ``CharRNN.loss_and_grads``, the registered clip, the optimizer), without logging; once with
  the default ``cell.backend=numpy`` and, when numba is installed (``pip install -e ".[fast]"``),
  once with ``cell.backend=numba`` (the compiled gate kernels), side by side;
* the course-style per-step loop and PyTorch CPU eager (when importable) -- see
  framework/studies/bench_refs.py;
* the GEMM bound: the speed of running only the step's unavoidable matmuls at its shapes, and
  the share of it rnnlab reaches.

Then the classification rows (``--no-classify`` skips them): training texts/s of the names
classifier (``task=classify dataset=names``: padded names, the last valid state into a dense
softmax), one layer, uni- and bidirectional, rnnlab through ``Trainer.train_step`` against PyTorch
(``pack_padded_sequence`` into the same cell, a linear head on the final states) on the same
batches; and the sentiment row (``--no-sentiment`` skips it): the model of
``experiments/sentiment.yaml`` (rotten_tomatoes words through a trainable 50-d embedding, a
bidirectional LSTM of 64 units, a dense softmax, batches of 64) against PyTorch with an
``nn.Embedding`` of the same size.  rnnlab's cells run every padded step (the padding's
gradient is zero); PyTorch's packed sequences skip them.

Then the dates model's row (``--no-seq2seq`` skips it; framework/studies/bench_seq2seq.py):
training pairs/s of the ``experiment=dates`` seq2seq model against the same model in PyTorch.

All configurations are interleaved in one process (round after round, so drifting machine load
hits every column alike) and each number is the median over rounds.  BLAS threads are limited
with threadpoolctl (and torch.set_num_threads) and reported.  The full mode adds thread scaling
at hidden 256 / batch 64, the CLI-vs-bare-loop overhead, peak memory and start-up time.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from framework import ROOT
from framework.cli.console import ArgumentParser, int_at_least
from framework.studies.bench_refs import (
    CourseLoop,
    TorchClassifyLoop,
    TorchLoop,
    course_clip_and_adam,
    gemm_flops_per_char,
    gemm_step,
    torch_available,
)
from framework.studies.machine import blas_report, cpu_model
from framework.training.runtime import keep_freed_memory

CELL_ORDER = ("rnn", "lstm", "gru")
HIDDEN = (64, 128, 256)
BATCH = (1, 32, 64)
COLUMNS = ("rnnlab", "numba", "course", "torch", "gemm")


def numba_available() -> bool:
    """Whether the compiled backend can run (numba installed); checked without importing it."""
    return importlib.util.find_spec("numba") is not None
CLASSIFY_HIDDEN, CLASSIFY_BATCH = 128, 64
# The sentiment preset's model (experiments/sentiment.yaml): hidden units per direction, batch,
# embedding size.
SENTIMENT_HIDDEN, SENTIMENT_BATCH, SENTIMENT_EMBEDDING = 64, 64, 50


# --------------------------------------------------------------------------- the real trainer
def make_trainer(cell: str, hidden: int, batch: int, seq: int, extra: list[str] | None = None,
                 out_dir: Path | None = None, dataset: str = "tinyshakespeare") -> Any:
    """A Trainer built from the real config (tiny-shakespeare unless ``dataset`` says otherwise,
    clip=norm, Adam, float32)."""
    from hydra import compose, initialize_config_dir

    from framework.cli.overrides import store_plugin_configs
    from framework.tracking.protocol import NullTracker
    from framework.training.config import validate
    from framework.training.trainer import Reporter, Trainer

    overrides = [f"cell={cell}", f"cell.hidden_size={hidden}", f"dataset={dataset}",
                 f"train.batch_size={batch}", f"train.seq_len={seq}", "mlflow.enabled=false",
                 *(extra or [])]
    store_plugin_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        rc = validate(compose(config_name="config", overrides=overrides))
    out = out_dir or Path(tempfile.mkdtemp(prefix="rnnlab-bench-"))
    return Trainer(rc, out_dir=out, reporter=Reporter(NullTracker(), lambda _: None))


# --------------------------------------------------------------------------- threads and BLAS
def limit_threads(n: int) -> Any:
    """Limit BLAS (threadpoolctl) and torch to n threads; returns the limiter (or None)."""
    if torch_available():
        import torch

        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional ("bench" extra): then NumPy's BLAS thread count is not set
        return None
    return threadpool_limits(limits=n)


# --------------------------------------------------------------------------- measurement
def _calibrated(fn: Callable[[], int], target_s: float) -> Callable[[], float]:
    """Warm up ``fn`` (one training step) and return a sampler: seconds per char over enough
    steps to last about ``target_s``."""
    start = time.perf_counter()
    chars = fn() + fn()
    per_char = (time.perf_counter() - start) / chars
    number = max(1, math.ceil(target_s / (per_char * chars / 2)))

    def sample() -> float:
        t0 = time.perf_counter()
        n = sum(fn() for _ in range(number))
        return (time.perf_counter() - t0) / n

    return sample


def run_grid(cells: tuple[str, ...], hidden: tuple[int, ...], batch: tuple[int, ...], seq: int,
             rounds: int, target_s: float, use_torch: bool,
             log: Callable[[str], None], use_numba: bool = False) -> list[dict]:
    """Chars/s of every column for every configuration, interleaved, medians over rounds.
    ``use_numba`` adds the column of the same trainer with ``cell.backend=numba``."""
    samplers: dict[tuple, Callable[[], float]] = {}
    rows = []
    for cell in cells:
        for H in hidden:
            for B in batch:
                trainer = make_trainer(cell, H, B, seq)
                V = trainer.vocab.size
                key = (cell, H, B)
                rows.append({"cell": cell, "hidden": H, "batch": B, "vocab": V})
                step = trainer.train_step
                samplers[key + ("rnnlab",)] = _calibrated(lambda s=step: s().tokens,
                                                          target_s)
                if use_numba:
                    fast = make_trainer(cell, H, B, seq, ["cell.backend=numba"])
                    samplers[key + ("numba",)] = _calibrated(
                        lambda s=fast.train_step: s().tokens, target_s)
                clip, adam = course_clip_and_adam(trainer.rc.optimizer.lr,
                                                  trainer.rc.clip.max_norm)
                course = CourseLoop(cell, V, H, trainer.feed, clip, adam)
                samplers[key + ("course",)] = _calibrated(course.step, target_s)
                if use_torch:
                    ref = TorchLoop(cell, V, H, trainer.feed, trainer.rc.optimizer.lr,
                                    trainer.rc.clip.max_norm)
                    samplers[key + ("torch",)] = _calibrated(ref.step, target_s)
                samplers[key + ("gemm",)] = _calibrated(gemm_step(cell, V, H, B, seq), target_s)
    log(f"{len(rows)} configurations warmed up; timing {rounds} interleaved rounds")
    times: dict[tuple, list[float]] = {k: [] for k in samplers}
    for r in range(rounds):
        for key, sample in samplers.items():
            times[key].append(sample())
        log(f"  round {r + 1}/{rounds} done")
    for row in rows:
        key = (row["cell"], row["hidden"], row["batch"])
        for col in COLUMNS:
            if key + (col,) in times:
                row[col] = 1.0 / statistics.median(times[key + (col,)])
        row["gflops"] = gemm_flops_per_char(row["cell"], row["vocab"], row["hidden"]) \
            * row["gemm"] / 1e9
    return rows


def make_classify_trainer(cell: str, hidden: int, batch: int, bidirectional: bool = False,
                          extra: list[str] | None = None) -> Any:
    """A Trainer of the names classifier (task=classify, padded names, many-to-one, one layer)."""
    overrides = ["task=classify", f"model.bidirectional={str(bidirectional).lower()}",
                 *(extra or [])]
    return make_trainer(cell, hidden, batch, 25, overrides, dataset="names")


def run_classify(cells: tuple[str, ...], hidden: tuple[int, ...], batch: tuple[int, ...],
                 rounds: int, target_s: float, use_torch: bool,
                 log: Callable[[str], None]) -> list[dict]:
    """Training texts/s of rnnlab (Trainer.train_step) and PyTorch on the names classifier,
    uni- and bidirectional, interleaved, medians over rounds."""
    configs = [make_classify_trainer(cell, H, B, bi)
               for cell in cells for H in hidden for B in batch for bi in (False, True)]
    return time_classifiers(configs, rounds, target_s, use_torch, log)


def make_sentiment_trainer(hidden: int = SENTIMENT_HIDDEN, batch: int = SENTIMENT_BATCH) -> Any:
    """A Trainer of the sentiment preset's model (experiments/sentiment.yaml: words of
    rotten_tomatoes, a trainable 50-d embedding, a bidirectional LSTM, a dense softmax); the
    table starts random (the speed is that of GloVe's: the same shapes and updates)."""
    overrides = ["task=classify", "tokenizer=words", "model.bidirectional=true",
                 f"model.embedding.size={SENTIMENT_EMBEDDING}"]
    return make_trainer("lstm", hidden, batch, 25, overrides, dataset="rotten_tomatoes")


def time_classifiers(trainers: list[Any], rounds: int, target_s: float, use_torch: bool,
                     log: Callable[[str], None]) -> list[dict]:
    """Training texts/s of each classifier Trainer and of PyTorch eager on its batches (the same
    cell, direction, sizes and embedding), interleaved, medians over rounds."""
    samplers: dict[tuple, Callable[[], float]] = {}
    rows = []
    for index, trainer in enumerate(trainers):
        rc, corpus = trainer.rc, trainer.corpus
        bi, table = rc.model.bidirectional, rc.model.embedding
        embedding = (table.size, table.trainable) if table.size else None
        chars = sum(len(t) for t in corpus.train) / corpus.n_train
        rows.append({"cell": rc.cell.name, "hidden": rc.cell.hidden_size,
                     "batch": rc.train.batch_size, "bidirectional": bi,
                     "embedding": table.size, "classes": corpus.n_classes,
                     "chars_per_text": chars, "vocab": trainer.vocab.size})
        samplers[(index, "rnnlab")] = _calibrated(
            lambda s=trainer.train_step: int(s().tokens), target_s)
        if use_torch:
            ref = TorchClassifyLoop(rc.cell.name, trainer.vocab.size, rc.cell.hidden_size,
                                    corpus.n_classes, trainer.feed, rc.optimizer.lr,
                                    rc.clip.max_norm, bidirectional=bi, embedding=embedding)
            samplers[(index, "torch")] = _calibrated(ref.step, target_s)
    log(f"{len(rows)} classification configurations warmed up; timing {rounds} rounds")
    times: dict[tuple, list[float]] = {k: [] for k in samplers}
    for r in range(rounds):
        for key, sample in samplers.items():
            times[key].append(sample())
        log(f"  round {r + 1}/{rounds} done")
    for index, row in enumerate(rows):
        for col in ("rnnlab", "torch"):
            if (index, col) in times:
                row[col] = 1.0 / statistics.median(times[(index, col)])
    return rows


def thread_scaling(cells: tuple[str, ...], H: int, B: int, seq: int, rounds: int,
                   max_threads: int, target_s: float) -> list[dict]:
    """rnnlab (and torch) chars/s at 1 vs ``max_threads`` threads, interleaved."""
    from threadpoolctl import threadpool_limits

    samplers = {}
    for cell in cells:
        trainer = make_trainer(cell, H, B, seq)
        for n in (1, max_threads):
            with threadpool_limits(limits=n):
                samplers[(cell, n)] = _calibrated(lambda s=trainer.train_step: s().tokens, target_s)
    times: dict[tuple, list[float]] = {k: [] for k in samplers}
    for _ in range(rounds):
        for (cell, n), sample in samplers.items():
            with threadpool_limits(limits=n):
                times[(cell, n)].append(sample())
    out = []
    for cell in cells:
        one = 1.0 / statistics.median(times[(cell, 1)])
        many = 1.0 / statistics.median(times[(cell, max_threads)])
        out.append({"cell": cell, "one": one, "many": many, "ratio": many / one})
    return out


# --------------------------------------------------------------------------- whole-program checks
# Runs the command given in argv and reports its peak RSS.  A child's ru_maxrss includes the
# RSS of the process it was forked from (the kernel carries the pre-exec high-water mark over),
# so measured straight from this benchmark process -- hundreds of MiB of trainers and torch
# models -- it would report the benchmark's own size.  This launcher is ~10 MiB.
_RSS_LAUNCHER = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "file=sys.stderr); sys.exit(rc)"
)


def _cli(args: list[str], cwd: Path, timeout: float = 900,
         measure_rss: bool = False) -> tuple[float, str, int]:
    """Run ``python -m framework ARGS``; returns (wall seconds, stdout+stderr, peak RSS KiB of
    the framework process when ``measure_rss``, else 0)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "framework", *args]
    if measure_rss:
        command = [sys.executable, "-c", _RSS_LAUNCHER, *command]
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"python -m framework {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    rss = 0
    if measure_rss:
        found = re.search(r"^peak-rss-kib (\d+)$", proc.stderr, flags=re.MULTILINE)
        if not found:
            raise RuntimeError(f"no peak RSS reported:\n{proc.stderr[-1000:]}")
        rss = int(found.group(1))
    return wall, proc.stdout + proc.stderr, rss


def _reported_speed(output: str) -> float:
    found = re.search(r"^done:.* ([\d,]+) chars/s", output, flags=re.MULTILINE)
    if found:
        return float(found.group(1).replace(",", ""))
    raise RuntimeError(f"no 'done: ... chars/s' line in the CLI output:\n{output[-1000:]}")


def whole_program(threads: int, log: Callable[[str], None], use_numba: bool = False,
                  use_torch: bool = False) -> dict[str, Any]:
    """CLI vs bare trainer loop (LSTM 128, batch 64), peak memory (LSTM 256, batch 64, seq
    100) and start-up time of ``python -m framework --help``.  ``use_numba`` adds the same CLI
    run with ``cell.backend=numba`` and, with ``use_torch``, PyTorch eager on the same batches
    (150 steps in this process), in the same rounds."""
    res: dict[str, Any] = {}
    thread_env = {"OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    os.environ.update(thread_env)  # the children read these; this process is already limited
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as tmp:
        cwd = Path(tmp)
        steps = 150
        args = ["cell=lstm", "cell.hidden_size=128", "dataset=tinyshakespeare",
                "train.batch_size=64", f"train.steps={steps}", "train.checkpoint_every=0",
                "train.eval_every=0", "train.sample_every=0", "mlflow.log_model=false",
                f"hydra.run.dir={cwd / 'run'}"]
        bare, cli, walls, fast, ref = [], [], [], [], []
        for _ in range(3):
            trainer = make_trainer("lstm", 128, 64, 25, out_dir=cwd / "bare")
            trainer.train_step()  # warm-up, as the CLI's first step is inside its own timing
            t0 = time.perf_counter()
            chars = sum(trainer.train_step().tokens for _ in range(steps))
            bare.append(chars / (time.perf_counter() - t0))
            wall, out, _ = _cli(args, cwd)
            cli.append(_reported_speed(out))
            walls.append(wall)
            log(f"  CLI vs bare: {cli[-1]:,.0f} vs {bare[-1]:,.0f} chars/s")
            if use_numba:
                fast.append(_reported_speed(_cli([*args, "cell.backend=numba"], cwd)[1]))
                log(f"  CLI cell.backend=numba: {fast[-1]:,.0f} chars/s")
            if use_numba and use_torch:
                torch_loop = TorchLoop("lstm", trainer.vocab.size, 128, trainer.feed,
                                       trainer.rc.optimizer.lr, trainer.rc.clip.max_norm)
                torch_loop.step()
                t0 = time.perf_counter()
                chars = sum(torch_loop.step() for _ in range(steps))
                ref.append(chars / (time.perf_counter() - t0))
                log(f"  PyTorch eager: {ref[-1]:,.0f} chars/s")
        res["bare"], res["cli"] = statistics.median(bare), statistics.median(cli)
        res["cli_wall"] = statistics.median(walls)
        res["cli_numba"] = statistics.median(fast) if fast else None
        res["torch"] = statistics.median(ref) if ref else None
        _, _, rss = _cli(["cell=lstm", "cell.hidden_size=256", "dataset=tinyshakespeare",
                          "train.batch_size=64", "train.seq_len=100", "train.steps=20",
                          "train.checkpoint_every=0", "train.eval_every=0",
                          "train.sample_every=0", f"hydra.run.dir={cwd / 'mem'}"], cwd,
                         measure_rss=True)
        res["peak_rss_mib"] = rss / 1024
        starts = [_cli(["--help"], cwd)[0] for _ in range(3)]
        res["help_s"] = statistics.median(starts)
    return res


# --------------------------------------------------------------------------- output
def _k(x: float | None) -> str:
    return "-" if x is None else f"{x / 1000:,.1f}K"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def format_table(rows: list[dict], markdown: bool) -> str:
    """The grid table; the numba columns appear when the rows have them (``rnnlab`` is the
    default NumPy backend)."""
    with_numba = any("numba" in r for r in rows)
    head = ["cell", "H", "B", "rnnlab", "course loop", "x course", "PyTorch", "x torch",
            "GEMM bound", "% bound"]
    if with_numba:
        head[4:4] = ["numba"]
        head += ["numba x numpy", "numba x torch", "numba % bound"]
    lines = []
    for r in rows:
        torch_s = r.get("torch")
        line = [r["cell"], str(r["hidden"]), str(r["batch"]), _k(r["rnnlab"]),
                _k(r["course"]), f"{r['rnnlab'] / r['course']:.1f}x", _k(torch_s),
                _ratio(r["rnnlab"], torch_s), _k(r["gemm"]),
                f"{100 * r['rnnlab'] / r['gemm']:.0f}%"]
        if with_numba:
            fast = r.get("numba")
            line[4:4] = [_k(fast)]
            line += [_ratio(fast, r["rnnlab"]), _ratio(fast, torch_s),
                     "-" if fast is None else f"{100 * fast / r['gemm']:.0f}%"]
        lines.append(line)
    return _table(head, lines, markdown)


def format_classify_table(rows: list[dict], markdown: bool) -> str:
    head = ["cell", "direction", "H", "B", "rnnlab texts/s", "PyTorch texts/s", "x torch"]
    lines = []
    for r in rows:
        torch_s = r.get("torch")
        lines.append([r["cell"], "bi" if r["bidirectional"] else "uni", str(r["hidden"]),
                      str(r["batch"]), _k(r["rnnlab"]), _k(torch_s),
                      "-" if torch_s is None else f"{r['rnnlab'] / torch_s:.2f}x"])
    return _table(head, lines, markdown)


def _table(head: list[str], lines: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*line) for line in lines])


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m framework.bench", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    positive = int_at_least(1)
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, shorter samples, no whole-program checks (< 2 min)")
    parser.add_argument("--threads", type=positive, default=1,
                        help="BLAS/torch threads (default 1)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--cells", nargs="+", choices=CELL_ORDER, default=list(CELL_ORDER))
    parser.add_argument("--hidden", nargs="+", type=positive, default=list(HIDDEN))
    parser.add_argument("--batch", nargs="+", type=positive, default=list(BATCH))
    parser.add_argument("--seq", type=positive, default=25)
    parser.add_argument("--rounds", type=positive, default=None, help="interleaved rounds")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    parser.add_argument("--no-numba", action="store_true",
                        help="skip the cell.backend=numba column (shown when numba is installed)")
    parser.add_argument("--no-grid", action="store_true",
                        help="skip the table (with the full mode: only the extra checks)")
    parser.add_argument("--classify-hidden", nargs="+", type=int, default=[CLASSIFY_HIDDEN])
    parser.add_argument("--classify-batch", nargs="+", type=int, default=[CLASSIFY_BATCH])
    parser.add_argument("--no-classify", action="store_true",
                        help="skip the classification rows (names, and the sentiment row)")
    parser.add_argument("--no-sentiment", action="store_true",
                        help="skip the sentiment row (words, embedding, bidirectional LSTM)")
    parser.add_argument("--no-seq2seq", action="store_true",
                        help="skip the dates model's row (seq2seq with attention)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # the heap settings the training command runs with
    if "RNNLAB_DATA_DIR" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
        os.environ["RNNLAB_DATA_DIR"] = str(ROOT.parent / "shared" / "data")
    rounds = args.rounds or (3 if args.quick else 7)
    target = 0.02 if args.quick else 0.05
    use_torch = torch_available() and not args.no_torch
    use_numba = numba_available() and not args.no_numba
    limiter = limit_threads(args.threads)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with limiter if limiter is not None else nullcontext():
        torch_note = "not installed" if not torch_available() else (
            f"{__import__('torch').__version__}, {__import__('torch').get_num_threads()} "
            "thread(s)" if use_torch else "skipped")
        numba_note = "not installed" if not numba_available() else (
            f"{__import__('numba').__version__} (column 'numba': cell.backend=numba)"
            if use_numba else "skipped")
        print(f"CPU: {cpu_model()}; numpy {np.__version__}; BLAS: {blas_report()}; "
              f"torch: {torch_note}; numba: {numba_note}")
        print(f"training chars/s (forward + backward + clip=norm + Adam), tiny-shakespeare, "
              f"float32, seq {args.seq}, threads {args.threads}; median of {rounds} interleaved "
              f"rounds ({'quick' if args.quick else 'full'} mode)")
        rows = [] if args.no_grid else run_grid(
            tuple(args.cells), tuple(args.hidden), tuple(args.batch), args.seq, rounds, target,
            use_torch, log, use_numba)
        if rows:
            print(format_table(rows, args.markdown))
            rates = ", ".join(f"{r['cell']}{r['hidden']}/{r['batch']} {r['gflops']:.0f}"
                              for r in rows if r["batch"] == max(args.batch))
            print("GEMM bound: only the step's matmuls (recurrent fwd, dh, dW_h; output fwd, dW, "
                  f"dx) at its shapes; measured rates: {rates} GFLOP/s")
        if not args.no_classify:
            crows = run_classify(tuple(args.cells), tuple(args.classify_hidden),
                                 tuple(args.classify_batch), rounds, target, use_torch, log)
            mean_len = statistics.mean(r["chars_per_text"] for r in crows)
            print(f"training texts/s, names classifier (task=classify: padded names, many-to-one, "
                  f"{crows[0]['classes']} classes, {mean_len:.1f} chars per name on average; "
                  "forward + backward + clip=norm + Adam), float32, 1 layer, threads "
                  f"{args.threads}; median of {rounds} interleaved rounds")
            print(format_classify_table(crows, args.markdown))
        if not (args.no_classify or args.no_sentiment):
            srows = time_classifiers([make_sentiment_trainer()], rounds, target, use_torch, log)
            r = srows[0]
            print(f"training texts/s, sentiment model (experiments/sentiment.yaml: rotten_tomatoes "
                  f"words, {r['vocab']:,}-word vocabulary, {r['chars_per_text']:.1f} words per "
                  f"snippet on average; a trainable {r['embedding']}-d embedding, bidirectional "
                  f"LSTM, dense softmax over {r['classes']} classes), float32, threads "
                  f"{args.threads}; median of {rounds} interleaved rounds")
            print(format_classify_table(srows, args.markdown))
        if not args.no_seq2seq:
            from framework.studies.bench_seq2seq import seq2seq_section

            print(seq2seq_section(args.quick, rounds, target, use_torch, args.markdown,
                                  args.threads, log))
        if not args.quick:
            n = max(2, args.threads)
            log(f"thread scaling 1 vs {n} at H=256, B=64")
            for r in thread_scaling(tuple(args.cells), 256, 64, args.seq, rounds, n, target):
                print(f"threads {r['cell']} H256 B64: 1 thread {_k(r['one'])}, {n} threads "
                      f"{_k(r['many'])}: {r['ratio']:.2f}x")
        if not args.quick:  # still inside the thread limit: the bare loop must match the CLI
            log("whole-program checks (subprocesses)")
            w = whole_program(args.threads, log, use_numba, use_torch)
            print(f"CLI (python -m framework, MLflow logging on) lstm H128 B64: {_k(w['cli'])} "
                  f"chars/s vs bare trainer loop {_k(w['bare'])}: {w['cli'] / w['bare']:.2f}x "
                  f"(wall {w['cli_wall']:.1f} s for 150 steps incl. start-up)")
            if w["cli_numba"] is not None:
                vs = "" if w["torch"] is None else (
                    f"; PyTorch eager on the same batches {_k(w['torch'])}: "
                    f"{w['cli_numba'] / w['torch']:.2f}x")
                print(f"CLI with cell.backend=numba, lstm H128 B64: {_k(w['cli_numba'])} chars/s "
                      f"({w['cli_numba'] / w['cli']:.2f}x the NumPy backend's CLI){vs}")
            print(f"peak RSS, CLI training lstm H256 B64 seq100: {w['peak_rss_mib']:.0f} MiB")
            print(f"start-up, python -m framework --help: {w['help_s']:.2f} s")
    return 0

