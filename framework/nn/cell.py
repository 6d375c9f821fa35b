"""Recurrent-cell base class and the numerical helpers shared by every cell plugin.

Layout of the fast path: time-major, rows are batch elements.  A layer's
parameters are ``W_x`` (D, G*H), ``W_h`` (H, G*H) and ``b`` (G*H,), where G is the number of
gate blocks, each H columns wide.  Every cell computes its input projection for all time steps
before the time loop (:meth:`Cell.project_inputs`) and its input-side gradients with single big
operations after it (:meth:`Cell.input_grads`), so the per-step Python work is only the
recurrent matmul and the pointwise gate math.

**Gate-major work arrays.**  Inside a forward/backward call the gate pre-activations, gate
activations and their gradients are held as ``(G, T, B, H)``: gate k of step t is the
contiguous (B, H) block ``Z[k, t]``.  With the fused ``(T, B, G*H)`` layout every gate is a
strided column slice, and NumPy's element-wise loops on such slices cost 2-3x the same loop on a
contiguous block (measured; see docs/performance.md) -- that was the largest cost outside the
matmuls.  The recurrent matmul is then a stacked ``(B, H) @ (G, H, H)`` matmul
(:func:`gate_major`), which BLAS runs as fast as the fused ``(B, H) @ (H, G*H)`` one.  The
parameters and gradients keep the contract's fused layout; only the work arrays change.

The course API (cells/rnn.py, cells/lstm.py) reuses the pointwise gate functions of each cell
file, so each formula exists once; only the layout differs.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from framework.errors import ConfigError
from framework.registry import Plugin

INIT_SCHEMES = ("course", "xavier")
BACKENDS = ("numpy", "numba")
ROW_PAD = 16  # elements added to rows of the compiled backend's GEMM operands (padded_recurrent)
FAST_EXTRA = 'pip install -e ".[fast]"'
State = tuple  # (h,) for rnn/gru, (h, c) for lstm; each (B, H)


# --------------------------------------------------------------------------- pointwise helpers
def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid 1 / (1 + exp(-z)), the course's formula, computed with ``out=`` ufuncs.

    ``out`` may be ``z`` itself (in place).  Large negative inputs overflow exp to inf, which
    correctly gives 0; callers silence that warning once per call with ``np.errstate``.
    """
    if out is None:
        out = np.empty_like(z)
    np.negative(z, out=out)
    np.exp(out, out=out)
    np.add(out, 1, out=out)  # a Python int is a weak scalar: float32 stays float32
    np.reciprocal(out, out=out)
    return out


def course_softmax(z: np.ndarray) -> np.ndarray:
    """The course's softmax: subtract the global max of the whole array, normalise over axis 0."""
    e = np.exp(z - np.max(z))
    return e / e.sum(axis=0)


def as_dtype(dtype: Any) -> np.dtype:
    """Only float32 and float64 are supported; anything else is a user configuration error."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype must be float32 or float64, got {dt.name}")
    return dt


# --------------------------------------------------------------------------- initialisers
def course_normal(rng: Any, shape: tuple[int, ...]) -> np.ndarray:
    """randn(*shape) * 0.01 in float64.  ``standard_normal`` draws exactly what the legacy
    ``RandomState.randn`` draws, and also works for a ``np.random.Generator``."""
    return rng.standard_normal(shape) * 0.01


def xavier_uniform(rng: Any, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform (fan_in, fan_out) matrix, limit sqrt(6 / (fan_in + fan_out))."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def orthogonal(rng: Any, n: int) -> np.ndarray:
    """A random n x n orthogonal matrix (QR of a Gaussian, signs fixed so it is uniform)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


# --------------------------------------------------------------------------- scratch buffers
class Workspace:
    """Reusable scratch buffers keyed by name, so the hot loops do not page-fault fresh
    multi-megabyte arrays on every call.  Only for temporaries that never escape a call."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._buffers[key] = buf
        return buf


def gate_major(W: np.ndarray, gates: int) -> np.ndarray:
    """Fused (D, G*H) matrix -> contiguous (G, D, H) stack with block k = W[:, k*H:(k+1)*H].

    Always a new array (never a view of ``W``, not even for G == 1 or H == 1), so callers may
    scale it in place."""
    D, GH = W.shape
    return W.reshape(D, gates, GH // gates).transpose(1, 0, 2).copy()


def fused(blocks: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gate_major`: (G, D, H) -> contiguous fused (D, G*H)."""
    G, D, H = blocks.shape
    return np.ascontiguousarray(blocks.transpose(1, 0, 2)).reshape(D, G * H)


# Backward passes compute their upstream-independent local derivatives for a chunk of time
# steps at once: one NumPy call per chunk (call overhead dominates at small batch x hidden) on
# arrays small enough to stay in L2 (whole-sequence arrays at B64/H256 are streamed through
# memory twice).  Measured against per-step and whole-sequence factors: docs/performance.md.
FACTOR_CHUNK_BYTES = 256 * 1024


def backward_chunks(T: int, bytes_per_step: int) -> list[tuple[int, int]]:
    """Time-step ranges (t0, t1), last first, of at most FACTOR_CHUNK_BYTES of factor arrays."""
    K = max(1, min(T, FACTOR_CHUNK_BYTES // max(1, bytes_per_step)))
    return [(max(0, t1 - K), t1) for t1 in range(T, 0, -K)]


def scatter_add_rows(ids: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """out[:, v] = sum of rows[:, k] with ids[k] == v, for rows (G, N, H) -> out (G, n_rows, H).

    Ids of -1 (zero input) are dropped.  Sorting the ids once and summing each contiguous
    segment is ~8x faster than ``np.add.at`` and ~2x faster than a one-hot matmul here, and keeps
    the accumulation in the rows' dtype.  (``np.add.reduceat`` along axis 1 is ~10x slower than
    this loop over the <= vocabulary-size segments.)
    """
    G, _, H = rows.shape
    out = np.zeros((G, n_rows, H), dtype=rows.dtype)
    keep = np.flatnonzero(ids >= 0)
    if keep.size == 0:
        return out
    order = keep[np.argsort(ids[keep], kind="stable")]
    sorted_ids = ids[order]
    sorted_rows = np.take(rows, order, axis=1)
    bounds = np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1
    starts = [0, *bounds.tolist()]
    ends = [*bounds.tolist(), len(order)]
    for start, end in zip(starts, ends, strict=True):
        np.sum(sorted_rows[:, start:end], axis=1, out=out[:, int(sorted_ids[start])])
    return out


# --------------------------------------------------------------------------- base class
def check_cell_config(hidden_size: int, init: str, backend: str = "numpy") -> None:
    """Range checks of the options every cell has (ValueError, as schemas raise)."""
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size <= 0:
        raise ValueError(f"hidden_size must be > 0, got {hidden_size}")
    if init not in INIT_SCHEMES:
        raise ValueError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {init!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


@dataclass
class CellConfig:
    """The options every cell has (``cell.<key>=``); a cell with more extends this dataclass."""

    hidden_size: int = 128
    init: str = "xavier"  # xavier | course (the course's randn * 0.01; needs course_blocks)
    # numpy (bit-identical reference) | numba (compiled gate kernels, the "fast" extra; results
    # within float32 rounding of numpy's).  Parameters, gradients and checkpoints are the same.
    backend: str = "numpy"

    def __post_init__(self) -> None:
        check_cell_config(self.hidden_size, self.init, self.backend)


# --------------------------------------------------------------------------- compiled backend
class CompiledCache(tuple):
    """A forward pass's cache on the compiled backend; ``backward`` dispatches on this type (the
    two backends keep different arrays: fused (T, B, G*H) gates there, gate-major here)."""

    __slots__ = ()


def numba_cache_dir() -> Path | None:
    """Where numba keeps its compiled kernels: None (numba's own choice, ``__pycache__`` beside
    the module) when that folder is writable, else ``$RNNLAB_CACHE_DIR/numba`` (default
    ``~/.cache/rnnlab/numba``).  ``NUMBA_CACHE_DIR``, when set, wins (numba reads it itself)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    here = Path(__file__).resolve().parent
    pycache = here / "__pycache__"
    if os.access(pycache if pycache.is_dir() else here, os.W_OK):
        return None
    # The same default as the dataset cache (framework/data/files/fetch.py cache_dir).
    root = os.environ.get("RNNLAB_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "rnnlab"
    return base / "numba"


def load_kernels() -> ModuleType:
    """The compiled kernels (framework/nn/numba_kernels.py), importing numba on first use only.

    A missing numba is a configuration error naming the extra that installs it."""
    if importlib.util.find_spec("numba") is None:
        raise ConfigError(f"cell.backend=numba needs numba, which is not installed: {FAST_EXTRA}")
    cache = numba_cache_dir()
    if cache is not None:
        # numba reads NUMBA_CACHE_DIR when it is first imported, which is just below.
        cache.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(cache)
    from framework.nn import numba_kernels

    return numba_kernels


class Cell(Plugin):
    """Base of every recurrent cell plugin, built from its validated config: ``Cell(cfg)``.

    Subclasses set ``gates`` (number of H-wide gate blocks) and ``state_size`` (1 or 2), and
    implement :meth:`forward` and :meth:`backward`. ``cell.init=course`` needs the optional hook
    :meth:`course_blocks`. The schema is :class:`CellConfig` unless the cell registers its own.
    """

    schema = CellConfig
    gates: ClassVar[int] = 1
    state_size: ClassVar[int] = 1

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        self.hidden_size = int(self.cfg.hidden_size)
        self.init = self.cfg.init
        if self.init == "course" and not self.has_course_init():
            raise ConfigError(self._no_course_init())
        self.backend = getattr(self.cfg, "backend", "numpy")
        # The kernels module when backend == "numba" (see kernels_for), else None.
        self._kernels = load_kernels() if self.backend == "numba" else None
        if self._kernels is not None:
            self._kernels.warm_up(self.name)  # built-in cells' float32 kernels, once a process
        self._ws = Workspace()

    @classmethod
    def has_course_init(cls) -> bool:
        """Whether the cell defines the optional hook :meth:`course_blocks`."""
        return cls.course_blocks is not Cell.course_blocks

    def _no_course_init(self) -> str:
        return (f"cell '{self.name}' has no course initialisation: it does not define the "
                f"optional hook course_blocks(input_size, rng); use cell.init=xavier")

    def __repr__(self) -> str:
        backend = "" if self.backend == "numpy" else f", backend={self.backend!r}"
        return f"{type(self).__name__}(hidden_size={self.hidden_size}, init={self.init!r}{backend})"

    def kernels_for(self, dtype: np.dtype) -> ModuleType | None:
        """The compiled kernels when this cell runs them for arrays of ``dtype`` (float32 and
        float64 only; other dtypes, e.g. a test's extended-precision twin, take the NumPy
        path), else None."""
        if self._kernels is not None and dtype in (np.float32, np.float64):
            return self._kernels
        return None

    # ------------------------------------------------------------------ parameters
    def init_params(self, input_size: int, rng: Any, dtype: Any = "float32") -> dict[str, Any]:
        """Fresh parameters ``W_x`` (D, G*H), ``W_h`` (H, G*H), ``b`` (G*H,).

        ``init="course"``: ``randn * 0.01`` blocks in the course's draw order (``rng`` is the
        legacy ``RandomState``), zero biases.  ``init="xavier"``: Glorot-uniform input weights
        and an orthogonal recurrent matrix per gate block, zero biases.  Values are drawn in
        float64 and then cast, so float32 and float64 models start from the same numbers.
        """
        dt = as_dtype(dtype)
        H, G, D = self.hidden_size, self.gates, int(input_size)
        if self.init == "course":
            W_x, W_h = self.course_blocks(D, rng)
        else:
            W_x = np.concatenate([xavier_uniform(rng, D, H) for _ in range(G)], axis=1)
            W_h = np.concatenate([orthogonal(rng, H) for _ in range(G)], axis=1)
        b = self._initial_bias()
        return {
            "W_x": np.ascontiguousarray(W_x, dtype=dt),
            "W_h": np.ascontiguousarray(W_h, dtype=dt),
            "b": np.ascontiguousarray(b, dtype=dt),
        }

    def param_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        """Shapes of :meth:`init_params`'s arrays, computed without allocating them.

        A checkpoint's arrays are checked against these before they are read; a cell whose
        ``init_params`` returns other arrays overrides this method too.
        """
        H, G = self.hidden_size, self.gates
        return {"W_x": (int(input_size), G * H), "W_h": (H, G * H), "b": (G * H,)}


    def course_blocks(self, input_size: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """Optional hook of ``cell.init=course``: ``(W_x (D, G*H), W_h (H, G*H))`` in float64,
        drawn with ``course_normal(rng, shape)`` in the course's order (``rng`` is the legacy
        ``RandomState`` the course seeds)."""
        raise ConfigError(self._no_course_init())

    def _initial_bias(self) -> np.ndarray:
        return np.zeros(self.gates * self.hidden_size)

    def zero_state(self, batch: int, dtype: Any = "float32") -> tuple:
        dt = np.dtype(dtype)
        return tuple(np.zeros((batch, self.hidden_size), dtype=dt) for _ in range(self.state_size))

    # ------------------------------------------------------------------ shared fast-path pieces
    def project_inputs(
        self,
        params: dict[str, np.ndarray],
        x: np.ndarray,
        ids: bool,
        out: np.ndarray | None = None,
        prescale: tuple[float, ...] | None = None,
    ) -> np.ndarray:
        """x @ W_x + b for every time step at once, gate-major into ``out`` (G, T, B, H).

        For token ids this is a row gather of W_x (id -1 selects an appended zero row), never a
        one-hot matmul; for dense input it is one stacked (T*B, D) @ (G, D, H) matmul.
        ``prescale`` (one factor per gate) multiplies each gate's block (e.g. 0.5 for the
        sigmoid-via-tanh gates); it is applied to the weights, so it costs no pass over ``out``.
        """
        W_x, b = params["W_x"], params["b"]
        T, B = x.shape[:2]
        G, H = self.gates, self.hidden_size
        if out is None:
            out = np.empty((G, T, B, H), dtype=W_x.dtype)
        flat = out.reshape(G, T * B, H)
        b3 = b.reshape(G, 1, H)
        W3 = gate_major(W_x, G)
        if prescale is not None:
            s3 = np.asarray(prescale, dtype=W_x.dtype).reshape(G, 1, 1)
            W3 *= s3
            b3 = b3 * s3
        if ids:
            # Gather from a (G, V+1, H) table whose rows already include the bias; id -1 wraps
            # to the appended row, which is the bias alone (a zero input vector).  mode="wrap"
            # also avoids the slow buffered path np.take takes with out= in its default mode.
            table = np.concatenate([W3 + b3, b3], axis=1)
            np.take(table, x.reshape(-1), axis=1, out=flat, mode="wrap")
        else:
            np.matmul(x.reshape(T * B, x.shape[2]), W3, out=flat)
            flat += b3
        return out

    def input_grads(
        self, params: dict[str, np.ndarray], dZ: np.ndarray, x: np.ndarray, ids: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(dW_x, db, dx) from the gate-major pre-activation gradients dZ (G, T, B, H)."""
        W_x = params["W_x"]
        G, T, B, H = dZ.shape
        dZ3 = dZ.reshape(G, T * B, H)
        if ids:
            flat_ids = x.reshape(-1)
            blocks = scatter_add_rows(flat_ids, dZ3, W_x.shape[0])
            # db = every row of dZ summed = the V per-id sums plus the rows of id -1: a sum over
            # V rows instead of another pass over all T*B rows.
            db = blocks.sum(axis=1)
            dropped = np.flatnonzero(flat_ids < 0)
            if dropped.size:
                db += np.take(dZ3, dropped, axis=1).sum(axis=1)
            return fused(blocks), db.reshape(G * H), None
        db = dZ3.sum(axis=1).reshape(G * H)
        D = x.shape[2]
        x2 = x.reshape(T * B, D)
        dW_x = fused(np.matmul(x2.T, dZ3))
        # dx = dZ_fused @ W_x.T, summed gate by gate (one stacked matmul, then a sum over G).
        dx = np.matmul(dZ3, gate_major(W_x, G).transpose(0, 2, 1)).sum(axis=0)
        return dW_x, db, dx.reshape(T, B, D)

    def compiled_inputs(
        self, params: dict[str, np.ndarray], x: np.ndarray, ids: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """The compiled backend's input projection: (table (R, G*H), rows (T, B)) such that
        step t, batch element b adds ``table[rows[t, b]]`` (the kernels read it in place).

        Token ids: the table is ``[W_x + b; b]`` (V + 1 rows; id -1, a zero input, reads the
        bias row), gathered inside the kernel, never materialised per step.  Dense input: one
        (T*B, D) @ (D, G*H) matmul plus the bias, and rows numbering its T*B rows."""
        W_x, b = params["W_x"], params["b"]
        T, B = x.shape[:2]
        if ids:
            V = W_x.shape[0]
            table = np.empty((V + 1, W_x.shape[1]), dtype=W_x.dtype)
            np.add(W_x, b, out=table[:V])
            table[V] = b
            return table, np.where(x < 0, V, x)
        table = np.matmul(x.reshape(T * B, x.shape[2]), W_x)
        table += b
        return table, np.arange(T * B, dtype=np.intp).reshape(T, B)

    def padded_recurrent(
        self, W: np.ndarray, batch: int, key: str = "rec_pad"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(a copy of W with padded rows, the (batch, cols + ROW_PAD) output buffer of ``h @ W``).

        A fused (H, G*H) weight has rows of a power-of-two size for most hidden sizes (4 KiB at
        LSTM H256), and OpenBLAS's sgemm then runs ~30% slower at B32 (cache-set conflicts,
        measured: 267 vs 188 us); padding every row by ROW_PAD elements avoids it.  The copy is
        a new array (the forward pass keeps it for :meth:`padded_transpose`; workspaces are
        shared by the layers of a stack).  The output buffer is padded alike and handed to the
        kernels whole, so that their rows are contiguous."""
        D, N = W.shape
        W_pad = np.empty((D, N + ROW_PAD), dtype=W.dtype)[:, :N]
        W_pad[...] = W
        return W_pad, self._ws.get(key, (batch, N + ROW_PAD), W.dtype)

    def padded_transpose(self, W_pad: np.ndarray, key: str = "WT_pad") -> np.ndarray:
        """W_pad.T as a row-padded copy (a workspace buffer) for the backward ``dz @ W.T``.

        A contiguous transposed copy makes that GEMM ~1.5x faster than the transposed view at
        H256 (204 vs 332 us at B32), and copying from the padded rows costs 130 us against
        750 us for ``np.ascontiguousarray(W.T)`` (4 KiB row stride: cache-set conflicts)."""
        D, N = W_pad.shape
        out = self._ws.get(key, (N, D + ROW_PAD), W_pad.dtype)[:, :D]
        np.copyto(out, W_pad.T)
        return out

    def compiled_input_grads(
        self, params: dict[str, np.ndarray], dZ: np.ndarray, x: np.ndarray, ids: bool,
        scattered: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(dW_x, db, dx) of the compiled backend from dZ (T, B, G*H).  For token ids the
        kernels have already summed each step's rows into ``scattered`` (V + 1, G*H): rows
        0..V-1 are dW_x, and all rows together (the bias row of id -1 included) are db."""
        if ids:
            V = params["W_x"].shape[0]
            return scattered[:V].copy(), scattered.sum(axis=0), None
        T, B, GH = dZ.shape
        dZ2 = dZ.reshape(T * B, GH)
        x2 = x.reshape(T * B, x.shape[2])
        dx = np.matmul(dZ2, params["W_x"].T)
        return np.matmul(x2.T, dZ2), dZ2.sum(axis=0), dx.reshape(T, B, x.shape[2])

    @staticmethod
    def prepare_input(
        params: dict[str, np.ndarray], x: np.ndarray, ids: bool
    ) -> np.ndarray:
        """Ids as an int array; dense input in the parameters' dtype (never a silent upcast)."""
        if ids:
            return np.asarray(x, dtype=np.intp)
        return np.ascontiguousarray(x, dtype=params["W_h"].dtype)

    @staticmethod
    def total_dh(
        dhs: np.ndarray | None, t: int, dh_next: np.ndarray, out: np.ndarray
    ) -> np.ndarray:
        """The gradient reaching h_t: from above (``dhs[t]``, absent when only the final state
        matters) plus from step t + 1 (``dh_next``), written into ``out``."""
        if dhs is None:
            out[...] = dh_next
        else:
            np.add(dhs[t], dh_next, out=out)
        return out

    def initial_state(self, state0: tuple | None, batch: int, dtype: np.dtype) -> tuple:
        if state0 is None:
            return self.zero_state(batch, dtype)
        return tuple(np.asarray(s, dtype=dtype) for s in state0)

    # ------------------------------------------------------------------ to implement
    def forward(
        self,
        params: dict[str, np.ndarray],
        x: np.ndarray,
        state0: tuple | None,
        *,
        layer_input_is_ids: bool,
    ) -> tuple[np.ndarray, tuple, Any]:
        """Run the whole sequence: returns (hs (T, B, H), final state tuple, cache)."""
        raise NotImplementedError

    def backward(
        self,
        params: dict[str, np.ndarray],
        dhs: np.ndarray | None,
        dstateT: tuple | None,
        cache: Any,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple]:
        """Gradients (param grads, dx or None for ids input, dstate0) of a scalar loss whose
        gradients wrt all hidden states are ``dhs`` and wrt the final state are ``dstateT``."""
        raise NotImplementedError


__all__ = [
    "BACKENDS",
    "FAST_EXTRA",
    "INIT_SCHEMES",
    "Cell",
    "CellConfig",
    "CompiledCache",
    "FACTOR_CHUNK_BYTES",
    "State",
    "Workspace",
    "as_dtype",
    "backward_chunks",
    "check_cell_config",
    "course_normal",
    "course_softmax",
    "fused",
    "gate_major",
    "load_kernels",
    "numba_cache_dir",
    "orthogonal",
    "scatter_add_rows",
    "sigmoid",
    "xavier_uniform",
]
