"""Optimizers (registry OPTIMIZERS): sgd, momentum, adagrad, rmsprop, adam.

``opt.step(params, grads)`` updates ``params`` in place and leaves ``grads`` untouched. The update
runs on the training hot path, so it is written with ``out=`` ufuncs into reusable scratch buffers
(no temporaries per step) and with Python-float scalars (a NumPy float64 scalar would promote
float32 arithmetic to float64 under NEP 50).

``state_dict()`` returns copies of everything as arrays (the step count as a 0-d int64 array and one
entry ``"<slot>.<param key>"`` per buffer), so it can go into an ``.npz`` with
``allow_pickle=False``; ``load_state_dict`` restores it for a bit-identical continuation.
Hyperparameters are not part of the state: they come from the config on resume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.errors import CheckpointError
from framework.registry import OPTIMIZERS, Plugin


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _positive(field: str, value: float) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    _check(ok, f"optimizer.{field} must be a finite number > 0, got {value!r}")


def _unit(field: str, value: float) -> None:
    ok = isinstance(value, (int, float)) and 0.0 <= value < 1.0
    _check(ok, f"optimizer.{field} must be in [0, 1), got {value!r}")


class Optimizer(Plugin):
    """Base class: per-parameter buffers named by ``slots``, created lazily as zeros.

    Every optimizer schema has ``lr``; ``self.lr`` starts there and is what the trainer's
    learning-rate schedule sets before each step.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        self.lr = float(self.cfg.lr)
        self.t = 0  # number of steps taken
        self.state: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.slots}
        self._scratch: dict[tuple, np.ndarray] = {}

    # -- the update -------------------------------------------------------------------------
    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """One update of every parameter that has a gradient, in place."""
        self.t += 1
        self._begin_step()
        for key, g in grads.items():
            self._update(key, params[key], g)

    def _begin_step(self) -> None:
        """Per-step scalars (e.g. Adam's bias correction); runs after ``t`` is incremented."""

    def use_compiled(self, kernels: Any) -> None:
        """Run the update with the compiled kernels of ``cell.backend=numba``
        (framework/nn/numba_kernels.py) where the optimizer has one (Adam); others ignore it.
        The trainer calls this when the cell runs on the compiled backend, so the default
        backend's updates stay bit-identical."""

    def _update(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def _buffer(self, slot: str, key: str, p: np.ndarray) -> np.ndarray:
        buffers = self.state[slot]
        buf = buffers.get(key)
        if buf is None:
            buf = buffers[key] = np.zeros_like(p)
        elif buf.shape != p.shape:
            raise CheckpointError(
                f"optimizer state '{slot}.{key}' has shape {buf.shape} but the parameter has "
                f"{p.shape}; the checkpoint belongs to a different model"
            )
        elif buf.dtype != p.dtype:  # e.g. a float64 checkpoint resumed with dtype=float32
            buf = buffers[key] = buf.astype(p.dtype)
        return buf

    def _tmp(self, p: np.ndarray, i: int = 0) -> np.ndarray:
        """Scratch array ``i`` shaped like ``p``; shared by parameters of the same shape/dtype."""
        key = (p.shape, p.dtype.str, i)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = np.empty_like(p)
        return buf

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        out = {"t": np.array(self.t, dtype=np.int64)}
        for slot, buffers in self.state.items():
            for key, buf in buffers.items():
                out[f"{slot}.{key}"] = buf.copy()
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        if "t" not in state:
            raise CheckpointError(f"{type(self).__name__} state has no step count 't'")
        t = np.asarray(state["t"])
        if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
            raise CheckpointError(f"optimizer step count 't' must be a 0-d integer, got {t!r}")
        loaded: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.slots}
        for name, value in state.items():
            if name == "t":
                continue
            slot, _, key = name.partition(".")
            if slot not in loaded or not key:
                raise CheckpointError(
                    f"unexpected optimizer state entry '{name}' for {type(self).__name__}; "
                    f"was the checkpoint saved with another optimizer?"
                )
            loaded[slot][key] = np.array(value, copy=True)
        key_sets = {slot: set(buffers) for slot, buffers in loaded.items()}
        if len({frozenset(keys) for keys in key_sets.values()}) > 1:
            raise CheckpointError(f"optimizer state buffers disagree on parameter keys: {key_sets}")
        if int(t) > 0 and self.slots and not any(key_sets.values()):
            raise CheckpointError(
                f"{type(self).__name__} state at step {int(t)} has no buffers; "
                f"was the checkpoint saved with another optimizer?"
            )
        self.t = int(t)
        self.state = loaded


@dataclass
class SGDConfig:
    lr: float = 0.01

    def __post_init__(self) -> None:
        _positive("lr", self.lr)


@OPTIMIZERS.register("sgd", schema=SGDConfig)
class SGD(Optimizer):
    """p -= lr * g (the course's ``update_parameters``)."""

    def _update(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        tmp = np.multiply(g, self.lr, out=self._tmp(p))
        p -= tmp


@dataclass
class MomentumConfig:
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _unit("momentum", self.momentum)


@OPTIMIZERS.register("momentum", schema=MomentumConfig)
class Momentum(Optimizer):
    """Heavy ball: v = mu*v + g; p -= lr*v (Nesterov: p -= lr*(g + mu*v)), PyTorch's form."""

    slots = ("v",)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        mu = self.cfg.momentum
        v = self._buffer("v", key, p)
        v *= mu
        v += g
        tmp = self._tmp(p)
        if self.cfg.nesterov:
            np.multiply(v, mu, out=tmp)
            tmp += g
            tmp *= self.lr
        else:
            np.multiply(v, self.lr, out=tmp)
        p -= tmp


@dataclass
class AdagradConfig:
    lr: float = 0.1
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _positive("eps", self.eps)


@OPTIMIZERS.register("adagrad", schema=AdagradConfig)
class Adagrad(Optimizer):
    """min-char-rnn: mem += g*g; p -= lr*g / sqrt(mem + eps), eps inside the root, mem from 0."""

    slots = ("mem",)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        mem = self._buffer("mem", key, p)
        step, root = self._tmp(p, 0), self._tmp(p, 1)
        np.multiply(g, g, out=step)
        mem += step
        np.add(mem, self.cfg.eps, out=root)
        np.sqrt(root, out=root)
        # (lr*g)/root in min-char-rnn's operation order, so the result matches it bit for bit.
        np.multiply(g, self.lr, out=step)
        step /= root
        p -= step


@dataclass
class RMSpropConfig:
    lr: float = 0.002
    decay: float = 0.95
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _unit("decay", self.decay)
        _positive("eps", self.eps)


@OPTIMIZERS.register("rmsprop", schema=RMSpropConfig)
class RMSprop(Optimizer):
    """char-rnn (torch optim.rmsprop): ms = decay*ms + (1-decay)*g*g; p -= lr*g/(sqrt(ms) + eps)."""

    slots = ("ms",)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        decay = self.cfg.decay
        ms = self._buffer("ms", key, p)
        step, root = self._tmp(p, 0), self._tmp(p, 1)
        ms *= decay
        np.multiply(g, g, out=step)
        step *= 1.0 - decay
        ms += step
        np.sqrt(ms, out=root)
        root += self.cfg.eps
        np.multiply(g, self.lr, out=step)
        step /= root
        p -= step


@dataclass
class AdamConfig:
    lr: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _unit("beta1", self.beta1)
        _unit("beta2", self.beta2)
        _positive("eps", self.eps)


@OPTIMIZERS.register("adam", schema=AdamConfig)
class Adam(Optimizer):
    """Adam as in Keras 2.0.6 (the course's Shakespeare model).

    m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
    p -= lr_t * m / (sqrt(v) + eps) with lr_t = lr * sqrt(1 - b2**t) / (1 - b1**t).
    The bias correction is folded into lr_t, so eps is added to the uncorrected sqrt(v) (Keras'
    form; PyTorch adds eps to the corrected one, which differs only while v is tiny).
    """

    slots = ("m", "v")

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        self._lr_t = self.lr
        self._kernels: Any = None

    def use_compiled(self, kernels: Any) -> None:
        # One pass instead of twelve: 110 vs 480 us for LSTM-256's 346K parameters (measured).
        self._kernels = kernels
        kernels.warm_up("adam")

    def _begin_step(self) -> None:
        t, c = self.t, self.cfg
        self._lr_t = self.lr * math.sqrt(1.0 - c.beta2**t) / (1.0 - c.beta1**t)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        beta1, beta2 = self.cfg.beta1, self.cfg.beta2
        m = self._buffer("m", key, p)
        v = self._buffer("v", key, p)
        if (self._kernels is not None and p.dtype in (np.float32, np.float64)
                and g.dtype == p.dtype and p.flags.c_contiguous and g.flags.c_contiguous):
            self._kernels.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1),
                                      v.reshape(-1), beta1, beta2, self._lr_t, self.cfg.eps)
            return
        step, root = self._tmp(p, 0), self._tmp(p, 1)
        m *= beta1
        np.multiply(g, 1.0 - beta1, out=step)
        m += step
        v *= beta2
        np.multiply(g, g, out=step)
        step *= 1.0 - beta2
        v += step
        np.sqrt(v, out=root)
        root += self.cfg.eps
        np.multiply(m, self._lr_t, out=step)
        step /= root
        p -= step


__all__ = ["SGD", "Adagrad", "Adam", "Momentum", "Optimizer", "RMSprop"]
