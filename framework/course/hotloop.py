"""The Dinosaurus Island hot loop: the course's tanh RNN trained one name at a time.

:func:`framework.course.model` spends nearly all its time here, so this is the one place where
the rnn plugin's math is written a second time, specialised for what the course does 35000
times: one sequence of ~13 characters, batch 1, float64, 50 hidden units.  At that size every
NumPy call costs ~1 us whatever it computes, so the speed comes from making fewer calls
(``python -m framework.coursebench`` measures it against a course-style loop):

* **One flat parameter buffer.**  All parameters are views into one array ``P`` and all
  gradients into one array ``G``, so the clip (``np.clip``) and the SGD step are three calls
  in total instead of three per parameter.
* **Bias and input folded into the recurrent matmul.**  Step t multiplies the row
  ``u_t = [a_{t-1}, 1, onehot(x_t)]`` by ``M = [Waa^T; b; Wax^T]``, so a step is one ``dot`` and
  one ``tanh``.  Each name keeps its ``U = [u_0; ...; u_T]`` rows between visits (only the
  ``a`` part is rewritten), and ``[a_t, 1] @ [Wya^T; by]`` gives every step's logits at once.
* **Whole-name backward.**  Softmax, loss, ``dWya``/``dby``, ``dA = dY @ Wya`` and
  ``1 - a^2`` are one call each over all steps; the recurrence is three calls per step; then
  ``U^T @ dZ`` is ``[dWaa^T; db; dWax^T]`` in one matmul, written straight into ``G``.

The arithmetic is the course's (per-step softmax with its own max, sequential loss sum, clip
then ``W -= lr * dW``); only the summation order inside the matmuls differs, and the printed
output matches the course's golden text (tests/course/test_course_api.py) and the course-style loop
(``framework.coursebench``).  Gradients are tested against the rnn plugin's backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from framework.errors import DataError
from framework.nn.models.language_model import CharRNN


class Name:
    """One training example: its ``U`` rows (kept between visits) and per-step views of them."""

    def __init__(self, inputs: Sequence[int | None], targets: Sequence[int], n_a: int,
                 vocab: int) -> None:
        T = len(inputs)
        if T == 0 or len(targets) != T:
            raise ValueError(f"a name needs as many targets as inputs (>= 1), got {T} and "
                             f"{len(targets)}")
        U = np.zeros((T + 1, n_a + 1 + vocab))
        U[:, n_a] = 1.0  # the bias column
        for t, x in enumerate(inputs):
            if x is not None:  # None is the course's all-zero first input
                U[t, n_a + 1 + x] = 1.0
        self.length = T
        self.U = U
        self.a_prev = U[0, :n_a]  # written with the carried hidden state before every visit
        self.a_last = U[T, :n_a]
        self.steps = list(zip(U[:T], U[1:, :n_a], strict=True))  # (u_t, where a_t goes)
        self.states = U[1:, :n_a]  # a_1 .. a_T
        self.states_1 = U[1:, : n_a + 1]  # [a_t, 1]: the output layer's input rows
        self.rows_in = U[:T]
        self.positions = np.arange(T)
        self.targets = np.asarray(targets, dtype=np.intp)


class _Scratch:
    """Work arrays for names of one length, with the backward loop's per-step views."""

    def __init__(self, T: int, n_a: int, vocab: int) -> None:
        self.probs = np.empty((T, vocab))
        self.dz = np.empty((T, n_a))  # dA, then dZ in place, last step first
        self.dtanh = np.empty((T, n_a))
        self.carry = np.empty(n_a)
        # (dz_{t+1}, dz_t, 1 - a_t^2) for t = T-2 .. 0
        self.back = list(zip(self.dz[:0:-1], self.dz[-2::-1], self.dtanh[-2::-1], strict=True))


class CourseRNN:
    """Parameters of the course model in one flat float64 buffer; :meth:`train_step` is one
    ``optimize`` call (forward, backward, clip, SGD) on one :class:`Name`."""

    def __init__(self, n_a: int, vocab: int, rng: np.random.RandomState) -> None:
        H, V = n_a, vocab
        K = H + 1 + V
        n_m, n_y = K * H, (H + 1) * V
        self.n_a, self.vocab = H, V
        self.P = np.zeros(n_m + n_y)
        self.G = np.zeros(n_m + n_y)
        self._step = np.empty(n_m + n_y)
        self.M = self.P[:n_m].reshape(K, H)  # rows: Waa^T, b, Wax^T
        self.Y = self.P[n_m:].reshape(H + 1, V)  # rows: Wya^T, by
        self.dM = self.G[:n_m].reshape(K, H)
        self.dY = self.G[n_m:].reshape(H + 1, V)
        # initialize_parameters (Wax, Waa, Wya drawn in the course's order; the caller seeds
        # rng) is the rnn plugin's init="course", whose row layout is already these blocks'.
        init = CharRNN("rnn", vocab_size=V, hidden_size=H, init="course", dtype="float64")
        params = init.init_params(rng)
        self.M[:H] = params["layers.0.W_h"]
        self.M[H] = params["layers.0.b"]
        self.M[H + 1 :] = params["layers.0.W_x"]
        self.Y[:H] = params["out.W"]
        self.Y[H] = params["out.b"]
        self.a = np.zeros(H)  # hidden state carried from name to name (never reset)
        self._scratch: dict[int, _Scratch] = {}

    def course_params(self) -> dict[str, np.ndarray]:
        """The course's parameter dict, as views of the flat buffer (column layout)."""
        H = self.n_a
        return {"Wax": self.M[H + 1 :].T, "Waa": self.M[:H].T, "Wya": self.Y[:H].T,
                "b": self.M[H].reshape(H, 1), "by": self.Y[H].reshape(self.vocab, 1)}

    def course_grads(self) -> dict[str, np.ndarray]:
        """The last step's (clipped) gradients under the course's keys, as views."""
        H = self.n_a
        return {"dWax": self.dM[H + 1 :].T, "dWaa": self.dM[:H].T, "dWya": self.dY[:H].T,
                "db": self.dM[H].reshape(H, 1), "dby": self.dY[H].reshape(self.vocab, 1)}

    def gradients(self, name: Name) -> float:
        """Forward and backward over ``name`` from the carried state; fills ``G`` (unclipped),
        advances the carried state and returns the summed cross-entropy."""
        dot, tanh, multiply, add = np.dot, np.tanh, np.multiply, np.add
        T = name.length
        s = self._scratch.get(T)
        if s is None:
            s = self._scratch[T] = _Scratch(T, self.n_a, self.vocab)
        name.a_prev[...] = self.a
        M = self.M
        for u, a in name.steps:  # a_t = tanh([a_{t-1}, 1, x_t] @ [Waa^T; b; Wax^T])
            dot(u, M, a)
            tanh(a, a)
        self.a = name.a_last.copy()
        # Output layer over all steps: the course's softmax subtracts each step's own max.
        p = s.probs
        dot(name.states_1, self.Y, p)
        p -= p.max(axis=1, keepdims=True)
        np.exp(p, p)
        p /= p.sum(axis=1, keepdims=True)
        loss = 0.0
        for logp in np.log(p[name.positions, name.targets]).tolist():
            loss -= logp  # summed in step order, as the course's loop does
        p[name.positions, name.targets] -= 1.0  # dY
        dot(name.states_1.T, p, self.dY)  # [dWya^T; dby]
        dz, dtanh = s.dz, s.dtanh
        dot(p, self.Y[: self.n_a].T, dz)  # dA = dY @ Wya for every step
        np.square(name.states, dtanh)
        np.subtract(1.0, dtanh, dtanh)  # 1 - a_t^2
        multiply(dz[T - 1], dtanh[T - 1], dz[T - 1])
        Waa = M[: self.n_a].T  # M holds Waa^T
        carry = s.carry
        for dz_next, dz_t, dtanh_t in s.back:  # dz_t = (dA_t + dz_{t+1} @ Waa) * (1 - a_t^2)
            dot(dz_next, Waa, carry)
            add(dz_t, carry, dz_t)
            multiply(dz_t, dtanh_t, dz_t)
        dot(name.rows_in.T, dz, self.dM)  # [dWaa^T; db; dWax^T]
        return loss

    def train_step(self, name: Name, lr: float = 0.01, max_value: float = 5.0) -> float:
        """The course's optimize(): gradients, clip to [-max_value, max_value], W -= lr * dW."""
        loss = self.gradients(name)
        np.clip(self.G, -max_value, max_value, self.G)
        np.multiply(self.G, lr, self._step)
        np.subtract(self.P, self._step, self.P)
        return loss


def names_for(examples: Sequence[str], char_to_ix: dict[str, int], n_a: int,
              vocab: int) -> list[Name]:
    """The course's (X, Y) for every example: X = [None] + ids, Y = ids + [newline]."""
    eos = char_to_ix["\n"]
    too_big = sorted(c for c, i in char_to_ix.items() if not 0 <= i < vocab)
    if too_big:
        raise DataError(f"characters {too_big!r} have indices outside [0, {vocab - 1}]; pass "
                        f"vocab_size={max(char_to_ix.values()) + 1} (the largest index + 1)")
    out = []
    for ex in examples:
        ids = [char_to_ix[c] for c in ex]
        out.append(Name([None, *ids], [*ids, eos], n_a, vocab))
    return out


__all__ = ["CourseRNN", "Name", "names_for"]
