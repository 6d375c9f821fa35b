"""Reading a checkpoint: validated metadata first, then each array after its header matched, and
the model it holds rebuilt by its task."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import framework.training.checkpoint.memory as memory
from framework.errors import CheckpointError, RnnlabError
from framework.training.checkpoint.arrays import (
    Checkpoint,
    check_members,
    describe_member,
    expected_arrays,
)
from framework.training.checkpoint.files import META_KEY, PARAM_PREFIX, STATE_PREFIX, decode_meta
from framework.training.checkpoint.metadata import MAX_META_BYTES, CheckpointMeta, parse_meta
from framework.training.safe_npz import Expect, NpzReader

_META_EXPECT = Expect(np.dtype(np.uint8), (None,), max_rows=MAX_META_BYTES)


def read_checkpoint(path: str | os.PathLike[str], *,
                    check: Callable[[CheckpointMeta], None] | None = None,
                    for_resume: bool = False, params_only: bool = False) -> Checkpoint:
    """Read and validate a checkpoint file; every problem is a one-line CheckpointError.

    The metadata is read and validated first, then ``check(meta)`` runs (resume's compatibility
    check), then the member list is compared with :func:`expected_arrays` and the total size with
    :func:`memory_limit`, and only then are arrays read, each after its header matched.
    ``params_only`` skips reading the data of optimizer and carried state (their names, sizes
    and headers are still checked).
    """
    shown = str(path)
    with NpzReader(path) as npz:
        if META_KEY not in npz.names:
            raise CheckpointError(f"{shown} is not an rnnlab checkpoint (no {META_KEY} entry)")
        blob = npz.read(META_KEY, _META_EXPECT, "metadata",
                        hint="it is not an rnnlab checkpoint")
        meta = parse_meta(decode_meta(blob, shown), shown)
        if check is not None:
            check(meta)
        expected = expected_arrays(meta)
        check_members(npz.names, expected, meta, for_resume)
        present = set(npz.names)
        wanted = [k for k in expected if k in present
                  and not (params_only and not k.startswith(PARAM_PREFIX))]
        total = sum(expected[k].max_bytes for k in wanted)
        limit = memory.memory_limit()
        if total > limit:
            raise CheckpointError(f"{meta.where} needs {memory.gb(total)} of memory, more than the "
                                  f"{memory.gb(limit)} available; refused before reading it")
        for k in expected:
            if k in present and k not in wanted:
                npz.check(k, expected[k], describe_member(k))
        arrays = {k: npz.read(k, expected[k], describe_member(k)) for k in wanted}
    rows = {a.shape[0] for k, a in arrays.items() if k.startswith(STATE_PREFIX)}
    if len(rows) > 1:
        raise CheckpointError(f"{meta.where}: its hidden state arrays disagree on the batch size "
                              f"({sorted(rows)}); the file is damaged")
    return Checkpoint(meta, arrays)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, metadata as stored)`` of a validated checkpoint (see :func:`read_checkpoint`)."""
    ckpt = read_checkpoint(path)
    return ckpt.arrays, ckpt.meta.raw


def build_model(checkpoint: Checkpoint) -> tuple[Any, Any]:
    """The ``(model, vocabulary)`` a checkpoint holds, with its trained parameters: its task
    rebuilds the model from the metadata (the vocabulary is None for a task without one)."""
    from framework.registry import TASKS

    spec, vocab = checkpoint.meta.model, checkpoint.meta.vocab
    try:
        model = TASKS.get(spec.task).model_from_meta(spec, vocab)
    except RnnlabError as exc:
        raise CheckpointError(f"{checkpoint.meta.where}: its model config does not build a "
                              f"model: {exc}") from None
    model.params = {k: np.ascontiguousarray(v) for k, v in checkpoint.params.items()}
    return model, vocab


def build_model_from_checkpoint(arrays: Mapping[str, np.ndarray],
                                meta: Mapping[str, Any] | CheckpointMeta) -> tuple[Any, Any]:
    """:func:`build_model` for arrays and metadata already in memory, checked the same way."""
    parsed = meta if isinstance(meta, CheckpointMeta) else parse_meta(meta)
    expected = expected_arrays(parsed)
    check_members(list(arrays), expected, parsed, for_resume=False)
    for name, value in arrays.items():
        arr = np.asarray(value)
        if not expected[name].matches(arr.shape, arr.dtype):
            raise CheckpointError(
                f"{parsed.where}: {describe_member(name)} has shape {arr.shape} {arr.dtype}, "
                f"the metadata implies {expected[name].shown()}")
    return build_model(Checkpoint(parsed, dict(arrays)))


def load_model(path: str | os.PathLike[str]) -> tuple[Any, Any, CheckpointMeta]:
    """Model, vocabulary and metadata of a checkpoint file, for generation and serving."""
    ckpt = read_checkpoint(path, params_only=True)
    model, vocab = build_model(ckpt)
    return model, vocab, ckpt.meta



__all__ = ["build_model", "build_model_from_checkpoint", "load_checkpoint", "load_model",
           "read_checkpoint"]
