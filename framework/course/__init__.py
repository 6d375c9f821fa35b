"""The course's Dinosaurus Island API with the course's exact names, signatures and printing.

The graded functions are thin adapters around the registered plugins -- the ``rnn`` cell inside
:class:`~framework.nn.models.language_model.CharRNN` (row gathers instead of one-hot matmuls, the
output layer and its gradients as one matmul over the whole name), the ``value`` clip, the
course-seeded ``categorical`` sampler and the ``sgd`` optimizer. ``model``'s training loop, which
runs ``optimize`` 35000 times on tiny arrays, uses :class:`framework.course.hotloop.CourseRNN`
instead: the same math with one flat parameter buffer and ~5 NumPy calls per character, because at
n_a = 50 the cost is the number of calls, not the arithmetic (``python -m
framework.studies.coursebench``).

The course keeps parameters in a dict of column-layout arrays ``Wax (n_a, V), Waa (n_a, n_a),
Wya (V, n_a), b (n_a, 1), by (V, 1)``; CharRNN keeps ``layers.0.W_x (V, H)`` etc. in row layout.
The two are transposes/reshapes of each other, so :func:`to_charrnn` and :func:`to_course` return
*views*: an in-place SGD step on the CharRNN side updates the caller's course dict, exactly as the
course's ``update_parameters`` mutates its argument.

Reproducibility: ``model`` matches the losses and names the course notebook prints, bit for
bit to the printed precision at iterations 0..12000 (float64). From ~14000 on the trajectory
depends on the BLAS kernel's summation order: different OpenBLAS kernels on one machine already
give different iteration-22000 results, so the published 22000 text is not a portable target.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from framework.course.hotloop import CourseRNN, names_for
from framework.nn.models.language_model import CharRNN
from framework.registry import CLIPS, OPTIMIZERS, SAMPLERS

COURSE_KEYS = ("Wax", "Waa", "Wya", "b", "by")
GRAD_KEYS = ("dWax", "dWaa", "dWya", "db", "dby")
MAX_SAMPLE_CHARS = 50  # sample() stops after 50 characters and appends the newline


# --------------------------------------------------------------------------- layout views
def to_charrnn(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Course dict -> CharRNN params (views; writing into them writes the course arrays)."""
    return {
        "layers.0.W_x": parameters["Wax"].T,
        "layers.0.W_h": parameters["Waa"].T,
        "layers.0.b": parameters["b"].reshape(-1),
        "out.W": parameters["Wya"].T,
        "out.b": parameters["by"].reshape(-1),
    }


def to_course(params: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    """CharRNN params (or grads, with ``prefix="d"``) -> course dict of views."""
    return {
        f"{prefix}Wax": params["layers.0.W_x"].T,
        f"{prefix}Waa": params["layers.0.W_h"].T,
        f"{prefix}Wya": params["out.W"].T,
        f"{prefix}b": params["layers.0.b"].reshape(-1, 1),
        f"{prefix}by": params["out.b"].reshape(-1, 1),
    }


def _plugin(registry: Any, **node: Any) -> Any:
    """Build a registered plugin (clip, sampler, optimizer) the way a config would."""
    return registry.build(node)


def _grads_to_charrnn(gradients: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return to_charrnn({k: gradients["d" + k] for k in COURSE_KEYS})


def _model_for(parameters: dict[str, np.ndarray]) -> CharRNN:
    """A 1-layer course RNN whose params are views of ``parameters``."""
    n_a = parameters["Waa"].shape[1]
    vocab = parameters["Wya"].shape[0]
    dtype = np.result_type(*(parameters[k] for k in COURSE_KEYS))
    model = CharRNN("rnn", vocab_size=vocab, hidden_size=n_a, init="course", dtype=dtype.name)
    model.params = to_charrnn(parameters)
    return model


def _sequence(X: list, Y: list) -> tuple[np.ndarray, np.ndarray]:
    """Course index lists (None = zero input) as time-major (T, 1) id arrays."""
    inputs = np.array([-1 if x is None else x for x in X], dtype=np.int64).reshape(-1, 1)
    targets = np.array(Y, dtype=np.int64).reshape(-1, 1)
    return inputs, targets


# --------------------------------------------------------------------------- graded functions
def clip(gradients: dict[str, np.ndarray], maxValue: float) -> dict[str, np.ndarray]:  # noqa: N803
    """Clamp dWax, dWaa, dWya, db, dby to [-maxValue, maxValue]; returns a NEW five-key dict
    (the 2021 course revision copies first, so the caller's gradients are left untouched)."""
    clipped = {k: np.array(gradients[k], copy=True) for k in GRAD_KEYS}
    _plugin(CLIPS, name="value", max_value=float(maxValue))(clipped)
    return clipped


def _course_sampler() -> Any:
    """The categorical sampler in course mode; sample ``s`` of a block reseeds with s + 2k."""
    return _plugin(SAMPLERS, name="categorical", course_seed=0)


def _sample_ids(model: CharRNN, eos: int, seed: int, sampler: Any = None) -> list[int]:
    """The course's sample loop on a CharRNN: zero first input, reseed per step, 50-char cap."""
    sampler = sampler or _course_sampler()
    state = model.zero_state(1)
    ids = np.array([-1], dtype=np.int64)
    indices: list[int] = []
    while len(indices) < MAX_SAMPLE_CHARS:
        logits, state = model.step(ids, state)
        idx = sampler(logits[0], rng=None, step=len(indices), sample_index=int(seed))
        indices.append(idx)
        if idx == eos:
            return indices
        ids[0] = idx
    indices.append(eos)
    return indices


def sample(parameters: dict[str, np.ndarray], char_to_ix: dict[str, int], seed: int) -> list[int]:
    """Indices of one sampled name, ending with the newline index (at most 51 entries)."""
    return _sample_ids(_model_for(parameters), char_to_ix["\n"], seed)


def optimize(
    X: list,  # noqa: N803
    Y: list,  # noqa: N803
    a_prev: np.ndarray,
    parameters: dict[str, np.ndarray],
    learning_rate: float = 0.01,
) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Forward, backward, clip at 5, SGD in place; returns (loss, clipped grads, a_last)."""
    model = _model_for(parameters)
    inputs, targets = _sequence(X, Y)
    loss, _, grads, stateT = model.loss_and_grads(
        inputs, targets, [(np.asarray(a_prev).T,)], reduction="sum")
    gradients = clip(to_course(grads, prefix="d"), 5)
    sgd = _plugin(OPTIMIZERS, name="sgd", lr=float(learning_rate))
    sgd.step(model.params, _grads_to_charrnn(gradients))
    return loss, gradients, np.array(stateT[0][0].T)


# --------------------------------------------------------------------------- the training loop
def get_initial_loss(vocab_size: int, seq_length: int) -> float:
    return -math.log(1.0 / vocab_size) * seq_length


def _print_block(j: int, loss: float, names: list[str]) -> None:
    print(f"Iteration: {j:d}, Loss: {loss:f}" + "\n")
    for name in names:
        print(name.replace("\n", ""))
    print()


def _course_name(ids: list[int], ix_to_char: dict[int, str]) -> str:
    """get_sample: join the characters and capitalise the first (the newline is kept)."""
    text = "".join(ix_to_char[i] for i in ids)
    return text[0].upper() + text[1:]


def model(
    data_x: list[str],
    ix_to_char: dict[int, str],
    char_to_ix: dict[str, int],
    num_iterations: int = 35000,
    n_a: int = 50,
    dino_names: int = 7,
    vocab_size: int = 27,
    verbose: bool = False,
) -> tuple[dict[str, np.ndarray], str]:
    """Train the course's character RNN; returns (parameters, last_dino_name)."""
    # The hot loop runs on CourseRNN (framework/course/hotloop.py), the batch-1 specialisation of
    # the rnn plugin with one flat parameter buffer; sampling goes through the plugins, on a
    # CharRNN whose parameters are views of that buffer.
    net = CourseRNN(n_a, vocab_size, np.random.RandomState(1))  # initialize_parameters: seed 1
    sampler_model, sampler = _model_for(net.course_params()), _course_sampler()
    loss = get_initial_loss(vocab_size, dino_names)
    examples = [x.strip() for x in data_x]
    np.random.seed(0)  # the course shuffles with the global RNG, so it is left seeded like it
    np.random.shuffle(examples)
    eos = char_to_ix["\n"]
    names = names_for(examples, char_to_ix, n_a, vocab_size)
    last_dino_name = "abc"
    for j in range(num_iterations):
        idx = j % len(examples)
        cur = net.train_step(names[idx], lr=0.01, max_value=5.0)  # optimize()
        if verbose and j in (0, len(examples) - 1, len(examples)):
            _print_verbose(j, idx, examples[idx], char_to_ix, j == 0)
        loss = 0.999 * loss + 0.001 * cur  # smooth()
        if j % 2000 == 0:
            names_out = [_course_name(_sample_ids(sampler_model, eos, s, sampler), ix_to_char)
                         for s in range(dino_names)]
            last_dino_name = names_out[-1]
            _print_block(j, loss, names_out)
    return net.course_params(), last_dino_name


def _print_verbose(j: int, idx: int, example: str, char_to_ix: dict[str, int],
                   first: bool) -> None:
    """Version A's debug lines (same text as its print calls)."""
    print("j = ", j, "idx = ", idx)
    if first:
        chars = list(example)
        ix = [char_to_ix[c] for c in chars]
        X = [None] + ix  # noqa: N806
        print("single_example =", example)
        print("single_example_chars", chars)
        print("single_example_ix", ix)
        print(" X = ", X, "\n", "Y =       ", X[1:] + [char_to_ix["\n"]], "\n")


__all__ = ["clip", "get_initial_loss", "model", "optimize", "sample", "to_charrnn",
           "to_course"]
