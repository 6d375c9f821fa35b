"""The embedding layer: token ids (T, B) -> vectors (T, B, E) from a (V, E) table, -1 a zero vector.

The table is the entry ``{prefix}W`` of the model's flat parameter dict (``embedding.W``), as
every layer's parameters are.  Id -1 (padding, or the cells' "no input") reads a zero vector and
sends no gradient anywhere.  The backward pass sums the gradient of every position into the row
of its id (a scatter-add: a word seen twice in a batch gets both contributions).  A frozen
table (``trainable=False``) returns no gradient, so no optimizer updates it (the optimizers
update exactly the parameters that have a gradient), and clipping never counts it.

Initialisation is seeded: N(0, ``init_std``) for every row, or the given pretrained vectors (or
those set as ``pretrained``) for the rows they cover and N(0, std of those vectors) for the
others, so that the rows without a vector have the scale of the rows with one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.errors import ConfigError, DataError
from framework.nn.cell import as_dtype, scatter_add_rows
from framework.nn.stack import check_ids

DEFAULT_INIT_STD = 0.1
MAX_EMBEDDING = 4096  # the widest table: model.embedding.size, and what a checkpoint may claim


class Embedding:
    """A (V, E) lookup table; the parameters live in the model's dict under ``key``."""

    def __init__(self, vocab_size: int, size: int, *, trainable: bool = True,
                 init_std: float = DEFAULT_INIT_STD, prefix: str = "embedding.") -> None:
        for name, value in (("vocabulary size", vocab_size), ("model.embedding.size", size)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not init_std > 0:
            raise ConfigError(f"the embedding's init_std must be > 0, got {init_std}")
        self.vocab_size, self.size = int(vocab_size), int(size)
        self.trainable = bool(trainable)
        self.init_std = float(init_std)
        self.key = f"{prefix}W"
        # (vectors (V, E), found (V,)): pretrained rows init_params uses when given none.
        self.pretrained: tuple[np.ndarray, np.ndarray] | None = None

    def param_shapes(self) -> dict[str, tuple[int, int]]:
        return {self.key: (self.vocab_size, self.size)}

    def init_params(self, rng: Any, dtype: Any = "float32", *,
                    vectors: np.ndarray | None = None,
                    found: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``{key: table}``: N(0, init_std) rows, or ``vectors`` (V, E) on the rows where
        ``found`` (V,) is true and N(0, their std) elsewhere.  One draw of (V, E) normals
        either way, so the random rows do not depend on which words have vectors."""
        dt = as_dtype(dtype)
        if vectors is None and self.pretrained is not None:
            vectors, found = self.pretrained
        noise = rng.standard_normal((self.vocab_size, self.size))
        if vectors is None:
            return {self.key: (noise * self.init_std).astype(dt)}
        vectors = np.asarray(vectors)
        found = np.ones(self.vocab_size, dtype=bool) if found is None else np.asarray(found)
        if vectors.shape != (self.vocab_size, self.size) or found.shape != (self.vocab_size,):
            raise DataError(f"pretrained vectors of shape {vectors.shape} do not fit an embedding "
                            f"of {self.vocab_size} words x {self.size}; set "
                            f"model.embedding.size to the vectors' dimension")
        if not found.any():
            raise DataError("the pretrained vectors cover no word of the vocabulary; use other "
                            "vectors or a random initialisation")
        covered = vectors[found].astype(np.float64)
        if not np.isfinite(covered).all():
            raise DataError("the pretrained vectors contain NaN or infinite values; use a clean "
                            "vector file")
        std = float(covered.std()) or self.init_std
        table = noise * std
        table[found] = covered
        return {self.key: table.astype(dt)}

    def forward(self, params: dict[str, np.ndarray], ids: np.ndarray) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        """``(vectors (T, B, E), cache)``; id -1 gives a zero vector."""
        ids = check_ids(ids, "inputs", -1, self.vocab_size, 2)
        table = params[self.key]
        out = table[np.maximum(ids, 0)]
        pad = ids < 0
        if pad.any():
            out[pad] = 0
        return out, ids

    def backward(self, params: dict[str, np.ndarray], dx: np.ndarray,
                 cache: np.ndarray) -> dict[str, np.ndarray]:
        """``{key: d loss / d table}`` from ``dx`` (T, B, E); empty when the table is frozen."""
        if not self.trainable:
            return {}
        ids = cache.reshape(-1)
        rows = np.asarray(dx, dtype=params[self.key].dtype).reshape(1, ids.size, self.size)
        return {self.key: scatter_add_rows(ids, rows, self.vocab_size)[0]}


__all__ = ["DEFAULT_INIT_STD", "MAX_EMBEDDING", "Embedding"]
