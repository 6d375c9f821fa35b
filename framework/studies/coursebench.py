"""``python -m framework.coursebench``: the course recipe, rnnlab's way against the course's way.

Times :func:`framework.course.model` (its hot loop is :mod:`framework.course.hotloop`: one flat
parameter buffer, bias and one-hot input folded into one matmul per step, the output layer and
its gradients over the whole name at once, no per-step dictionaries) against a straightforward
course-style loop written from the course's description (one-hot input vectors, per-step
dictionaries and matmuls, exactly the Dinosaurus Island procedure), both printing their
``Iteration: ...`` blocks, and checks the printed text is the same. Performance claims come from
this script, never from timed unit tests.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np

from framework.cli.console import ArgumentParser, int_at_least, print_error
from framework.course import get_initial_loss
from framework.course import model as fast_model
from framework.data.files.fetch import read_text
from framework.errors import RnnlabError
from framework.registry import DATASETS
from framework.studies.machine import machine_line
from framework.training.runtime import blas_threads


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z))
    return e / e.sum(axis=0)


def _sample(p: dict, eos: int, seed: int) -> list[int]:
    V, n_a = p["by"].shape[0], p["Waa"].shape[1]
    x, a_prev, idx, counter, out = np.zeros((V, 1)), np.zeros((n_a, 1)), -1, 0, []
    while idx != eos and counter != 50:
        a = np.tanh(p["Wax"] @ x + p["Waa"] @ a_prev + p["b"])
        y = _softmax(p["Wya"] @ a + p["by"])
        np.random.seed(counter + seed)
        idx = int(np.random.choice(list(range(V)), p=y.ravel()))
        out.append(idx)
        x = np.zeros((V, 1))
        x[idx] = 1
        a_prev = a
        seed += 1
        counter += 1
    if counter == 50:
        out.append(eos)
    return out


def course_style_forward_backward(X: list, Y: list, a_prev: np.ndarray,  # noqa: N803
                                  p: dict) -> tuple[float, dict, np.ndarray]:
    """The course's rnn_forward + rnn_backward for one name, step by step in column layout with
    one-hot inputs and per-step dicts. Returns (summed loss, gradients keyed like ``p``, a_last)."""
    V = p["Wax"].shape[1]
    x, a, y_hat, loss = {}, {-1: np.copy(a_prev)}, {}, 0.0
    for t in range(len(X)):
        x[t] = np.zeros((V, 1))
        if X[t] is not None:
            x[t][X[t]] = 1
        a[t] = np.tanh(p["Wax"] @ x[t] + p["Waa"] @ a[t - 1] + p["b"])
        y_hat[t] = _softmax(p["Wya"] @ a[t] + p["by"])
        loss -= np.log(y_hat[t][Y[t], 0])
    g = {k: np.zeros_like(v) for k, v in p.items()}
    da_next = np.zeros_like(a[0])
    for t in reversed(range(len(X))):
        dy = np.copy(y_hat[t])
        dy[Y[t]] -= 1
        g["Wya"] += dy @ a[t].T
        g["by"] += dy
        da = p["Wya"].T @ dy + da_next
        daraw = (1 - a[t] * a[t]) * da
        g["b"] += daraw
        g["Wax"] += daraw @ x[t].T
        g["Waa"] += daraw @ a[t - 1].T
        da_next = p["Waa"].T @ daraw
    return loss, g, a[len(X) - 1]


def course_style_model(data_x: list[str], ix_to_char: dict, char_to_ix: dict,
                       num_iterations: int, n_a: int = 50, dino_names: int = 7,
                       vocab_size: int = 27) -> None:
    """The reference: the course's Dinosaurus Island loop (one-hot x, dicts of per-step arrays)."""
    V = vocab_size
    np.random.seed(1)
    p = {"Wax": np.random.randn(n_a, V) * 0.01, "Waa": np.random.randn(n_a, n_a) * 0.01,
         "Wya": np.random.randn(V, n_a) * 0.01, "b": np.zeros((n_a, 1)), "by": np.zeros((V, 1))}
    loss = get_initial_loss(V, dino_names)
    examples = [x.strip() for x in data_x]
    np.random.seed(0)
    np.random.shuffle(examples)
    a_prev = np.zeros((n_a, 1))
    for j in range(num_iterations):
        ex = examples[j % len(examples)]
        X = [None] + [char_to_ix[c] for c in ex]  # noqa: N806
        Y = X[1:] + [char_to_ix["\n"]]  # noqa: N806
        cur, g, a_prev = course_style_forward_backward(X, Y, a_prev, p)
        for k in p:
            np.clip(g[k], -5, 5, out=g[k])
            p[k] -= 0.01 * g[k]
        loss = loss * 0.999 + cur * 0.001
        if j % 2000 == 0:
            print(f"Iteration: {j}, Loss: {loss:f}\n")
            for s in range(dino_names):
                name = "".join(ix_to_char[i] for i in _sample(p, char_to_ix["\n"], s))
                print(name[0].upper() + name[1:-1] if name.endswith("\n") else name.capitalize())
            print("\n", end="")


def _timed(fn: object, *args: object) -> tuple[float, str]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start, out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m framework.coursebench",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int_at_least(1), default=4001)
    parser.add_argument("--rounds", type=int_at_least(1), default=3)
    args = parser.parse_args(argv)
    # The dataset plugin finds the file ($RNNLAB_DATA_DIR, the cache, or a download).
    try:
        text = read_text(DATASETS.get("dinos")().locate(), lower=True)
    except RnnlabError as exc:
        print_error(exc)
        return exc.exit_code
    chars = sorted(set(text))
    ix_to_char = dict(enumerate(chars))
    char_to_ix = {c: i for i, c in enumerate(chars)}
    names = text.split("\n")
    fast_times, ref_times, same = [], [], True
    with blas_threads(1):
        for _ in range(args.rounds):  # interleaved, so machine-load drift hits both alike
            t_fast, out_fast = _timed(fast_model, names, ix_to_char, char_to_ix, args.iterations)
            t_ref, out_ref = _timed(course_style_model, names, ix_to_char, char_to_ix,
                                    args.iterations)
            fast_times.append(t_fast)
            ref_times.append(t_ref)
            same &= out_fast == out_ref
    fast, ref = float(np.median(fast_times)), float(np.median(ref_times))
    print(machine_line())
    print(f"course recipe, {args.iterations} iterations, 1 BLAS thread, median of {args.rounds}")
    print(f"  framework.course.model : {fast:7.2f} s")
    print(f"  course-style loop      : {ref:7.2f} s")
    print(f"  speed-up               : {ref / fast:7.2f}x; printed output identical: {same}")
    return 0 if same else 1

