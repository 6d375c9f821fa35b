"""Deprecated alias of :mod:`framework.bench` (issue 2's cell-speed check), kept so that

    python -m framework.cellspeed [--hidden 128] [--batch 64] [--seq 25] [--threads 1]

still works: it runs the benchmark for every cell at that one hidden size and batch.
"""

from __future__ import annotations

import argparse

from framework import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framework.cellspeed",
                                     description=__doc__ + "\nUse python -m framework.bench.")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    args = parser.parse_args(argv)
    return bench.main(["--quick", "--hidden", str(args.hidden), "--batch", str(args.batch),
                       "--seq", str(args.seq), "--threads", str(args.threads),
                       "--rounds", str(args.repeats)])


if __name__ == "__main__":
    raise SystemExit(main())
