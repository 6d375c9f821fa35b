"""The reference trainers that ``python -m framework.bench`` compares rnnlab against.

* :class:`CourseLoop` -- the course notebooks' way of training: column layout, one-hot input
  vectors, one matmul per gate per step, the softmax output layer inside the step loop, dict
  caches and dict gradients (it calls the course API of cells/rnn.py and cells/lstm.py; the GRU
  has no course API, so it gets the same treatment written out here with the GRU's shared
  pointwise functions).  Then the registered clip and Adam, as the trainer uses them.
* :class:`TorchLoop` -- PyTorch CPU eager with the same model: one-hot input into
  ``nn.RNN``/``nn.LSTM``/``nn.GRU``, ``nn.Linear``, cross-entropy, ``clip_grad_norm_``, Adam.
  (``nn.GRU`` is the cuDNN-style GRU that applies r after the recurrent matmul; rnnlab's is the
  char-rnn GRU, which needs a second, dependent matmul per step.  Same FLOPs.)
* :class:`TorchClassifyLoop` -- the PyTorch reference of the classification rows: padded
  labelled texts packed into the same cells, a linear head on the final states.
* :func:`gemm_step` -- only the matmuls one training step cannot avoid, at the exact shapes
  the fast path uses; its speed is the "GEMM bound".

Every loop trains on the same (T, B) batches of the same feed (the stream feed for the
language-model rows, the padded labelled-text feed for the classification rows).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from framework.data.feeds.base import Feed
from framework.registry import CELLS, CLIPS, OPTIMIZERS


def _plugin(name: str) -> Any:
    """The module of a registered cell (plugins must not be imported by path twice)."""
    return sys.modules[CELLS.get(name).__module__]


# --------------------------------------------------------------------------- course style
def _course_params(cell: str, V: int, H: int, rs: np.random.RandomState) -> dict:
    def r(*shape: int) -> np.ndarray:
        return (rs.randn(*shape) * 0.1).astype(np.float32)

    if cell == "rnn":
        return {"Wax": r(H, V), "Waa": r(H, H), "ba": r(H, 1), "Wya": r(V, H), "by": r(V, 1)}
    gates = "fioc" if cell == "lstm" else "rzn"
    p = {f"W{g}": r(H, H + V) for g in gates}
    p.update({f"b{g}": r(H, 1) for g in gates})
    p["Wy"], p["by"] = r(V, H), r(V, 1)
    return p


def _gru_cell_forward(xt: np.ndarray, h_prev: np.ndarray, p: dict) -> tuple:
    """Course-style char-rnn GRU step in column layout; gates (3, H, m) gate-major."""
    gru = _plugin("gru")
    concat = np.concatenate((h_prev, xt))
    rz = np.stack([p["Wr"] @ concat + p["br"], p["Wz"] @ concat + p["bz"]])
    gru.gru_gates_forward(rz)
    zn = p["Wn"] @ np.concatenate((rz[0] * h_prev, xt)) + p["bn"]
    h = np.empty_like(h_prev)
    gru.gru_state_forward(zn, rz[1], h_prev, h)
    return h, (h_prev, xt, np.concatenate([rz, zn[None]]))


def _gru_cell_backward(dh: np.ndarray, cache: tuple, p: dict) -> dict:
    """Course-style GRU backward in column layout (dict gradients, per-gate matmuls)."""
    gru = _plugin("gru")
    h_prev, xt, gates = cache
    H = h_prev.shape[0]
    f = np.empty_like(gates)
    gru.gru_backward_factors(gates, h_prev, f, np.empty_like(h_prev))
    dz_z, dz_n = dh * f[1], dh * f[2]
    drh = p["Wn"][:, :H].T @ dz_n
    dz_r = drh * f[0]
    out = {"da_prev": p["Wr"][:, :H].T @ dz_r + p["Wz"][:, :H].T @ dz_z + drh * gates[0]
           + dh * gates[1]}
    dxt = 0
    for g, dzg, left in (("r", dz_r, h_prev), ("z", dz_z, h_prev), ("n", dz_n, gates[0] * h_prev)):
        out[f"dW{g}"] = dzg @ np.concatenate((left, xt)).T
        out[f"db{g}"] = dzg.sum(axis=1, keepdims=True)
        dxt = dxt + p[f"W{g}"][:, H:].T @ dzg  # the course cells compute dxt too
    out["dxt"] = dxt
    return out


def course_style_grads(cell: str, p: dict, inputs: np.ndarray, targets: np.ndarray,
                       state: tuple) -> tuple[float, dict, tuple]:
    """Forward + backward the course way; returns (loss, grads keyed like ``p``, final state)."""
    T, B = inputs.shape
    V = p["by"].shape[0]
    rnn, lstm = _plugin("rnn"), _plugin("lstm")
    cols = np.arange(B)
    eye = np.eye(V, dtype=np.float32)
    a, c = state
    loss, steps = 0.0, []
    Wy = p["Wya"] if cell == "rnn" else p["Wy"]
    for t in range(T):
        xt = eye[:, inputs[t]]  # one-hot columns
        if cell == "rnn":
            a, y, cache = rnn.rnn_cell_forward(xt, a, p)
        elif cell == "lstm":
            a, c, y, cache = lstm.lstm_cell_forward(xt, a, c, p)
        else:
            a, cache = _gru_cell_forward(xt, a, p)
            y = rnn.course_softmax(Wy @ a + p["by"])
        loss -= float(np.log(y[targets[t], cols]).sum())
        steps.append((a, y, cache))
    grads: dict[str, Any] = {k: np.zeros_like(v) for k, v in p.items()}
    da_next = np.zeros_like(a)
    dc_next = np.zeros_like(a)
    for t in reversed(range(T)):
        a_t, y, cache = steps[t]
        dy = y.copy()
        dy[targets[t], cols] -= 1
        dy /= T * B  # mean loss, as the trainer's default
        grads["Wya" if cell == "rnn" else "Wy"] += dy @ a_t.T
        grads["by"] += dy.sum(axis=1, keepdims=True)
        da = Wy.T @ dy + da_next
        if cell == "rnn":
            g = rnn.rnn_cell_backward(da, cache)
        elif cell == "lstm":
            g = lstm.lstm_cell_backward(da, dc_next, cache)
            dc_next = g["dc_prev"]
        else:
            g = _gru_cell_backward(da, cache, p)
        for key, value in g.items():
            if key[:2] in ("dW", "db"):
                grads[key[1:]] += value
        da_next = g["da_prev"]
    return loss, grads, (a, c)


class CourseLoop:
    """Course-style training step: course forward/backward, then clip + Adam on the dicts."""

    def __init__(self, cell: str, V: int, H: int, feed: Feed, clip: Any, optimizer: Any) -> None:
        self.cell, self.feed = cell, feed
        self.params = _course_params(cell, V, H, np.random.RandomState(1))
        self.clip, self.optimizer = clip, optimizer
        self.H, self.k = H, 0
        self.state: tuple = ()

    def step(self) -> int:
        batch = self.feed.batch(self.k)
        if batch.reset or not self.state:
            B = batch.inputs.shape[1]
            self.state = (np.zeros((self.H, B), np.float32), np.zeros((self.H, B), np.float32))
        _, grads, self.state = course_style_grads(self.cell, self.params, batch.inputs,
                                                  batch.targets, self.state)
        self.clip(grads)
        self.optimizer.step(self.params, grads)
        self.k += 1
        return batch.inputs.size


# --------------------------------------------------------------------------- PyTorch
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class TorchLoop:
    """PyTorch eager training step with the same model, data, clip (norm 5) and Adam."""

    def __init__(self, cell: str, V: int, H: int, feed: Feed, lr: float, max_norm: float) -> None:
        import torch

        self.torch, self.feed = torch, feed
        torch.manual_seed(0)
        rnn_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = rnn_class(V, H)
        self.out = torch.nn.Linear(H, V)
        self.params = [*self.rnn.parameters(), *self.out.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=lr)
        self.eye = torch.eye(V)
        self.max_norm, self.V, self.k = max_norm, V, 0
        self.state: Any = None

    def step(self) -> int:
        torch = self.torch
        batch = self.feed.batch(self.k)
        if batch.reset:
            self.state = None
        x = self.eye[torch.from_numpy(batch.inputs)]  # (T, B, V) one-hot
        out, state = self.rnn(x, self.state)
        self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else \
            state.detach()
        logits = self.out(out).reshape(-1, self.V)
        loss = torch.nn.functional.cross_entropy(logits,
                                                 torch.from_numpy(batch.targets).reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.opt.step()
        self.k += 1
        return batch.inputs.size


class TorchClassifyLoop:
    """PyTorch eager many-to-one training step on the same padded batches of labelled texts:
    one-hot input (padding, id -1, a zero row), or with ``embedding`` = (size, trainable) an
    ``nn.Embedding`` whose padding row is zero, packed with ``pack_padded_sequence`` into
    ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (one layer, optionally bidirectional), ``nn.Linear`` on
    the final state of each text's last valid step, cross-entropy, ``clip_grad_norm_``, Adam."""

    def __init__(self, cell: str, V: int, H: int, n_classes: int, feed: Any, lr: float,
                 max_norm: float, bidirectional: bool = False,
                 embedding: tuple[int, bool] | None = None) -> None:
        import torch

        self.torch, self.feed = torch, feed
        torch.manual_seed(0)
        rnn_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        # Row V reads as zeros: index -1 (the feeds' padding id) selects it.
        self.eye = torch.cat([torch.eye(V), torch.zeros(1, V)])
        self.embedding, width, tables = None, V, []
        if embedding is not None:
            width, trainable = embedding
            self.embedding = torch.nn.Embedding(V + 1, width, padding_idx=V)
            self.embedding.weight.requires_grad_(trainable)
            tables = [self.embedding.weight] if trainable else []
        self.rnn = rnn_class(width, H, bidirectional=bidirectional)
        self.out = torch.nn.Linear(2 * H if bidirectional else H, n_classes)
        self.params = [*tables, *self.rnn.parameters(), *self.out.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=lr)
        self.max_norm, self.k = max_norm, 0

    def logits(self, inputs: np.ndarray, lengths: np.ndarray) -> Any:
        """(B, C) class scores of a right-padded (T, B) batch of ids."""
        torch = self.torch
        ids = torch.from_numpy(inputs)
        # (T, B, V) one-hot or (T, B, E) vectors, zeros after each end.
        # -1 % (V + 1) is V, the embedding's zero padding row.
        x = self.eye[ids] if self.embedding is None else self.embedding(ids % len(self.eye))
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.from_numpy(lengths), enforce_sorted=False)
        _, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state  # (directions, B, H)
        return self.out(torch.cat(list(h_n), dim=1))  # [forward; backward] final states

    def step(self) -> int:
        torch = self.torch
        batch = self.feed.batch(self.k)
        loss = torch.nn.functional.cross_entropy(self.logits(batch.inputs, batch.lengths),
                                                 torch.from_numpy(batch.labels))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.opt.step()
        self.k += 1
        return len(batch.labels)


# --------------------------------------------------------------------------- GEMM bound
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def gemm_flops_per_char(cell: str, V: int, H: int) -> float:
    """Matmul FLOPs per trained char: recurrent forward, dh back, dW_h (3 x 2 H GH) and the
    output layer's forward, dW and dx (3 x 2 H V).  The input projection is a gather (no
    FLOPs); the GRU's split r/z and n matmuls have the fused FLOP count."""
    GH = GATES[cell] * H
    return 3 * 2 * H * GH + 3 * 2 * H * V


def gemm_step(cell: str, V: int, H: int, B: int, T: int) -> Callable[[], int]:
    """A callable running exactly the unavoidable matmuls of one training step (float32)."""
    rng = np.random.default_rng(0)
    GH = GATES[cell] * H

    def a(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    h, W_h, z, W_hT = a(B, H), a(H, GH), a(B, GH), a(GH, H)
    Hs, dZ, top, W_out, dlog, W_outT = a(T * B, H), a(T * B, GH), a(T * B, H), a(H, V), \
        a(T * B, V), a(V, H)
    rec, dh, dW_h = np.empty((B, GH), np.float32), np.empty((B, H), np.float32), \
        np.empty((H, GH), np.float32)
    logits, dW_out, dx = np.empty((T * B, V), np.float32), np.empty((H, V), np.float32), \
        np.empty((T * B, H), np.float32)

    def run() -> int:
        for _ in range(T):
            np.matmul(h, W_h, out=rec)
        for _ in range(T):
            np.matmul(z, W_hT, out=dh)
        np.matmul(Hs.T, dZ, out=dW_h)
        np.matmul(top, W_out, out=logits)
        np.matmul(top.T, dlog, out=dW_out)
        np.matmul(dlog, W_outT, out=dx)
        return T * B

    return run


def course_clip_and_adam(lr: float, max_norm: float) -> tuple[Any, Any]:
    """Fresh registered clip (norm) and Adam objects for a reference loop."""
    return (CLIPS.build({"name": "norm", "max_norm": max_norm}),
            OPTIMIZERS.build({"name": "adam", "lr": lr}))


__all__ = ["CourseLoop", "TorchClassifyLoop", "TorchLoop", "course_clip_and_adam",
           "course_style_grads", "gemm_flops_per_char", "gemm_step", "torch_available"]
