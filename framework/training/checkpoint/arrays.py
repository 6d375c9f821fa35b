"""Checkpoint arrays: parameters, optimizer state and carried state packed under named members,
and the members (names, shapes, dtypes) a validated metadata allows.

Array names (prefixes)
    ``param/<name>``   model parameters, e.g. ``param/layers.0.W_x`` (the model's params keys)
    ``optim/<name>``   optimizer state_dict() entries: ``t`` (0-d int64) and ``<slot>.<param>``
    ``state/<layer>/<k>``  carried hidden state, entry ``k`` of layer ``layer`` (h, or h and c)
    ``kept/<name>``    early stopping's other parameters (files.KEPT_PREFIX): the best eval's,
                       or the last step's once the best was restored into ``param/``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framework.errors import CheckpointError
from framework.training.checkpoint.files import (
    KEPT_PREFIX,
    META_KEY,
    OPTIM_PREFIX,
    PARAM_PREFIX,
    STATE_PREFIX,
)
from framework.training.checkpoint.metadata import CheckpointMeta
from framework.training.safe_npz import Expect


def pack_arrays(params: Mapping[str, np.ndarray],
                optimizer_state: Mapping[str, Any] | None = None,
                carried: Sequence[Sequence[np.ndarray]] | None = None,
                kept: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Parameters, optimizer state, carried hidden state and early stopping's other parameters
    (``kept``) as the checkpoint's named arrays."""
    arrays = {f"{PARAM_PREFIX}{k}": v for k, v in params.items()}
    arrays.update({f"{KEPT_PREFIX}{k}": v for k, v in (kept or {}).items()})
    arrays.update({f"{OPTIM_PREFIX}{k}": np.asarray(v)
                   for k, v in (optimizer_state or {}).items()})
    arrays.update({f"{STATE_PREFIX}{i}/{j}": part for i, layer in enumerate(carried or ())
                   for j, part in enumerate(layer)})
    return arrays



def _optimizer_slots(name: str | None) -> tuple[str, ...] | None:
    """The buffer slots of a registered optimizer (``Optimizer.slots``), or None if unknown."""
    from framework.registry import OPTIMIZERS

    if name is None or name not in OPTIMIZERS:
        return None
    slots = getattr(OPTIMIZERS.get(name), "slots", None)
    if not isinstance(slots, tuple) or not all(isinstance(s, str) and s and "." not in s
                                               for s in slots):
        return None
    return slots


def expected_arrays(meta: CheckpointMeta) -> dict[str, Expect]:
    """Every array the metadata allows, with its shape and dtype, in model order.

    Parameters are required, and so are early stopping's kept parameters when the metadata says
    it has them (a best eval, or a restored best); optimizer state (``t`` and one buffer per slot
    and parameter) and carried state (rows up to ``config.train.batch_size``) may be absent, but
    not partly so.
    """
    spec = meta.model
    dt = spec.dtype
    out = {f"{PARAM_PREFIX}{k}": Expect(dt, s) for k, s in spec.param_shapes.items()}
    if meta.early_stop is not None and meta.early_stop["best_step"] is not None:
        out.update({f"{KEPT_PREFIX}{k}": Expect(dt, s) for k, s in spec.param_shapes.items()})
    slots = _optimizer_slots(meta.optimizer)
    if slots is not None:
        out[f"{OPTIM_PREFIX}t"] = Expect(np.dtype(np.int64), ())
        for slot in slots:
            out.update({f"{OPTIM_PREFIX}{slot}.{k}": Expect(dt, s)
                        for k, s in spec.param_shapes.items()})
    if meta.batch_size is not None:
        for layer in range(spec.num_layers):
            for k in range(int(spec.cell.state_size)):
                out[f"{STATE_PREFIX}{layer}/{k}"] = Expect(dt, (None, spec.hidden_size),
                                                           max_rows=meta.batch_size)
    return out


def describe_member(name: str) -> str:
    """What a member holds, for a message: "parameter 'out.W'", "optimizer state 't'", ..."""
    for prefix, kind in ((PARAM_PREFIX, "parameter"), (OPTIM_PREFIX, "optimizer state"),
                         (STATE_PREFIX, "hidden state"), (KEPT_PREFIX, "kept parameter")):
        if name.startswith(prefix):
            return f"{kind} '{name[len(prefix):]}'"
    return "metadata" if name == META_KEY else f"array '{name}'"


def check_members(names: Sequence[str], expected: Mapping[str, Expect], meta: CheckpointMeta,
                   for_resume: bool) -> None:
    """Refuse unknown members, missing parameters and half-present optimizer or carried state."""
    present = set(names) - {META_KEY}
    unexpected = sorted(present - set(expected))
    missing = sorted(k for k in expected if k.startswith((PARAM_PREFIX, KEPT_PREFIX))
                     and k not in present)
    for prefix in (OPTIM_PREFIX, STATE_PREFIX):
        group = [k for k in expected if k.startswith(prefix)]
        if any(k in present for k in group):
            buffers = [k for k in group if k != f"{OPTIM_PREFIX}t"]
            have = [k for k in buffers if k in present]
            missing += [k for k in group if k not in present and (have or k not in buffers)]
    if unexpected or missing:
        hint = "the file is damaged or was written by another program"
        if any(k.startswith(OPTIM_PREFIX) for k in unexpected) and \
                _optimizer_slots(meta.optimizer) is None:
            hint = ("its metadata names no optimizer" if meta.optimizer is None else
                    f"its optimizer {meta.optimizer!r} is not a registered optimizer here; "
                    f"install the plugin that defines it")
        raise CheckpointError(
            f"{meta.where}: its arrays do not match the model its metadata describes "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}); {hint}")
    if for_resume:
        needed = [(OPTIM_PREFIX, "optimizer state")]
        from framework.registry import TASKS

        if TASKS.get(meta.model.task).carries_state:  # its state goes on across batches
            needed.append((STATE_PREFIX, "hidden state"))
        for prefix, what in needed:
            if not any(k.startswith(prefix) for k in present):
                raise CheckpointError(f"resume: {meta.where} holds no {what}; resume needs a "
                                      f"checkpoint written by a training run")


# ---------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: validated metadata and the arrays it was checked against."""

    meta: CheckpointMeta
    arrays: dict[str, np.ndarray] = field(repr=False)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: self.arrays[f"{PARAM_PREFIX}{k}"] for k in self.meta.model.param_shapes}

    @property
    def kept_params(self) -> dict[str, np.ndarray] | None:
        """Early stopping's other parameters (see ``meta.early_stop``), None when it has none."""
        kept = {k: self.arrays.get(f"{KEPT_PREFIX}{k}") for k in self.meta.model.param_shapes}
        return None if any(v is None for v in kept.values()) else kept

    @property
    def optimizer_state(self) -> dict[str, np.ndarray]:
        n = len(OPTIM_PREFIX)
        return {k[n:]: v for k, v in self.arrays.items() if k.startswith(OPTIM_PREFIX)}

    @property
    def carried_state(self) -> list[tuple[np.ndarray, ...]] | None:
        spec = self.meta.model
        first = f"{STATE_PREFIX}0/0"
        if first not in self.arrays:
            return None
        return [tuple(self.arrays[f"{STATE_PREFIX}{layer}/{k}"]
                      for k in range(int(spec.cell.state_size)))
                for layer in range(spec.num_layers)]


__all__ = ["Checkpoint", "check_members", "describe_member", "expected_arrays", "pack_arrays"]
