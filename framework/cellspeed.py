"""Throughput of the fast cells vs a straightforward course-style implementation.

    python -m framework.cellspeed [--hidden 128] [--batch 64] [--seq 25] [--threads 1]

Both sides compute forward + backward of a one-layer char model including the softmax output
layer and its gradients (float32, vocabulary 65), from the same token ids.  The course-style
side is what the course notebooks do: column layout, one-hot input vectors, one matmul per gate
per step, per-step output layer, dict caches and gradients (it calls the course API of
cells/rnn.py and cells/lstm.py; the GRU has no course API, so it gets the same treatment with
per-gate matrices and the GRU's shared pointwise functions).  Measurements are interleaved in
one process, medians of several repeats, with BLAS limited to ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from framework.model import CharRNN
from framework.plugins import load_plugins

CELL_ORDER = ("rnn", "lstm", "gru")


def _module(name: str) -> Any:
    """The loaded plugin module of a cell (plugins must not be imported by path twice)."""
    load_plugins()
    return sys.modules[f"rnnlab_plugins.cells.{name}"]


# --------------------------------------------------------------------------- course-style side
def _course_params(cell: str, V: int, H: int, rs: np.random.RandomState) -> dict:
    def r(*shape: int) -> np.ndarray:
        return (rs.randn(*shape) * 0.1).astype(np.float32)

    if cell == "rnn":
        return {"Wax": r(H, V), "Waa": r(H, H), "ba": r(H, 1), "Wya": r(V, H), "by": r(V, 1)}
    gates = "fioc" if cell == "lstm" else "rzn"
    p = {f"W{g}": r(H, H + V) for g in gates}
    p.update({f"b{g}": r(H, 1) for g in gates})
    p["Wy" if cell == "lstm" else "Wya"], p["by"] = r(V, H), r(V, 1)
    return p


def _gru_cell_forward(xt: np.ndarray, h_prev: np.ndarray, p: dict) -> tuple:
    gru = _module("gru")
    H, m = h_prev.shape
    concat = np.concatenate((h_prev, xt))
    rz = np.concatenate([(p["Wr"] @ concat + p["br"]).T, (p["Wz"] @ concat + p["bz"]).T], axis=1)
    gru.gru_gates_forward(rz)
    r, z = rz[:, :H].T, rz[:, H:].T
    zn = (p["Wn"] @ np.concatenate((r * h_prev, xt)) + p["bn"]).T.copy()
    h = np.empty((m, H), dtype=h_prev.dtype)
    gru.gru_state_forward(zn, np.ascontiguousarray(z.T), np.ascontiguousarray(h_prev.T), h)
    return h.T.copy(), (h_prev, xt, np.concatenate([rz, zn], axis=1))


def _gru_cell_backward(dh: np.ndarray, cache: tuple, p: dict) -> dict:
    gru = _module("gru")
    h_prev, xt, gates = cache
    H, m = h_prev.shape
    hp = np.ascontiguousarray(h_prev.T)
    f = np.empty_like(gates)
    gru.gru_backward_factors(gates, hp, f, np.empty_like(hp))
    W_hT = {g: np.ascontiguousarray(p[f"W{g}"][:, :H]) for g in "rzn"}  # (W_h)^T per gate
    dz, drh, dh_prev = np.empty_like(gates), np.empty_like(hp), np.empty_like(hp)
    gru.gru_backward_step(np.array(dh.T), gates, f, dz, W_hT["n"],
                          np.concatenate([W_hT["r"], W_hT["z"]]), drh, dh_prev)
    rh = gates[:, :H].T * h_prev
    out = {"dh_prev": dh_prev.T}
    dxt = 0
    for k, g in enumerate("rzn"):
        dzg = dz[:, k * H : (k + 1) * H].T
        left = rh if g == "n" else h_prev
        out[f"dW{g}"] = dzg @ np.concatenate((left, xt)).T
        out[f"db{g}"] = dzg.sum(axis=1, keepdims=True)
        dxt = dxt + p[f"W{g}"][:, H:].T @ dzg  # the course cells compute dxt too
    out["dxt"] = dxt
    return out


def course_style_fb(cell: str, p: dict, inputs: np.ndarray, targets: np.ndarray) -> float:
    """Forward + backward, course style; returns the loss (gradients are computed and kept in
    dicts as the course does, then dropped)."""
    T, B = inputs.shape
    V = p["by"].shape[0]
    H = p["Waa"].shape[0] if cell == "rnn" else p["bf" if cell == "lstm" else "br"].shape[0]
    cols = np.arange(B)
    eye = np.eye(V, dtype=np.float32)
    a = np.zeros((H, B), np.float32)
    c = np.zeros((H, B), np.float32)
    loss, steps = 0.0, []
    rnn, lstm = _module("rnn"), _module("lstm")
    for t in range(T):
        xt = eye[:, inputs[t]]  # one-hot columns
        if cell == "rnn":
            a, y, cache = rnn.rnn_cell_forward(xt, a, p)
        elif cell == "lstm":
            a, c, y, cache = lstm.lstm_cell_forward(xt, a, c, p)
        else:
            a, cache = _gru_cell_forward(xt, a, p)
            y = _module("rnn").course_softmax(p["Wya"] @ a + p["by"])
        loss -= float(np.log(y[targets[t], cols]).sum())
        steps.append((a, y, cache))
    Wy = p["Wya"] if cell != "lstm" else p["Wy"]
    grads: dict[str, np.ndarray] = {"dWy": np.zeros_like(Wy), "dby": np.zeros_like(p["by"])}
    da_next = np.zeros((H, B), np.float32)
    dc_next = np.zeros((H, B), np.float32)
    for t in reversed(range(T)):
        a_t, y, cache = steps[t]
        dy = y.copy()
        dy[targets[t], cols] -= 1
        grads["dWy"] += dy @ a_t.T
        grads["dby"] += dy.sum(axis=1, keepdims=True)
        da = Wy.T @ dy + da_next
        if cell == "rnn":
            g = rnn.rnn_cell_backward(da, cache)
        elif cell == "lstm":
            g = lstm.lstm_cell_backward(da, dc_next, cache)
            dc_next = g["dc_prev"]
        else:
            g = _gru_cell_backward(da, cache, p)
            g["da_prev"] = g.pop("dh_prev")
        for key, value in g.items():
            if key.startswith("dW") or key.startswith("db"):
                grads[key] = grads.get(key, 0) + value
        da_next = g["da_prev"]
    return loss


# --------------------------------------------------------------------------- measurement
def _time(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def run(hidden: int, batch: int, seq: int, repeats: int, vocab: int = 65) -> list[tuple]:
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, vocab, (seq, batch))
    targets = rng.integers(0, vocab, (seq, batch))
    fast, course = {}, {}
    for cell in CELL_ORDER:
        model = CharRNN(cell, vocab, hidden, dtype="float32")
        model.init_params(np.random.default_rng(1))
        fast[cell] = lambda m=model: m.loss_and_grads(inputs, targets, None)
        params = _course_params(cell, vocab, hidden, np.random.RandomState(1))
        course[cell] = lambda c=cell, p=params: course_style_fb(c, p, inputs, targets)
    for cell in CELL_ORDER:  # warm up (allocations, BLAS buffers)
        fast[cell]()
        course[cell]()
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):  # interleaved, so drifting machine load hits both sides alike
        for cell in CELL_ORDER:
            samples.setdefault((cell, "fast"), []).append(_time(fast[cell], 3))
            samples.setdefault((cell, "course"), []).append(_time(course[cell], 1))
    chars = seq * batch
    rows = []
    for cell in CELL_ORDER:
        f = chars / statistics.median(samples[(cell, "fast")])
        c = chars / statistics.median(samples[(cell, "course")])
        rows.append((cell, f, c, f / c))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framework.cellspeed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:  # optional (the "bench" extra): then the thread count is not enforced
        threadpool_limits = None
    limiter = threadpool_limits(args.threads) if threadpool_limits else None
    try:
        if threadpool_limits:
            blas = ", ".join(
                f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')}, "
                f"{i['num_threads']} thread(s))"
                for i in threadpool_info() if i["user_api"] == "blas"
            )
        else:
            blas = "unknown (install threadpoolctl to limit and report BLAS threads)"
        print(f"numpy {np.__version__}; BLAS: {blas}")
        print(f"forward+backward incl. output layer, float32, vocab 65, hidden {args.hidden}, "
              f"batch {args.batch}, seq {args.seq}; median of {args.repeats} interleaved repeats")
        rows = run(args.hidden, args.batch, args.seq, args.repeats)
        print(f"{'cell':<6}{'fast chars/s':>14}{'course-style chars/s':>22}{'speedup':>10}")
        for cell, f, c, s in rows:
            print(f"{cell:<6}{f:>14,.0f}{c:>22,.0f}{s:>9.1f}x")
    finally:
        if limiter is not None:
            limiter.unregister()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
