"""Resuming: which settings must match the checkpoint's, and the check that runs before any of
its arrays is read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from framework.errors import CheckpointError
from framework.training.checkpoint.arrays import Checkpoint
from framework.training.checkpoint.metadata import CheckpointMeta
from framework.training.checkpoint.reading import read_checkpoint

if TYPE_CHECKING:
    from framework.data.vocab import Vocab


# Settings that must match for a resumed run to continue the same training, besides the options
# of every feed (must_match()). Everything else (the number of steps, logging cadence, sampling,
# tracking) may change when resuming.
MUST_MATCH = ("task", "cell", "dataset", "tokenizer", "optimizer", "clip", "model", "seed", "dtype",
              "train.batch_size", "train.seq_len", "train.feed", "train.loss", "train.smoothing")


# Settings under a MUST_MATCH key that only choose how the same model is computed: a checkpoint
# moves freely between them (cell.backend: numpy or the compiled kernels, same parameters).
RUNTIME_ONLY = ("cell.backend",)


def must_match() -> tuple[str, ...]:
    """MUST_MATCH and every feed's train.* options: batches are a function of them."""
    from framework.registry import FEEDS

    return (*MUST_MATCH, *sorted({f"train.{key}" for name in FEEDS.names()
                                  for key in FEEDS.option_names(name)}))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a saved one) with the options it lacks set to their defaults: a checkpoint
    written before an option existed, or whose config listed only the options set in YAML,
    trained with what the option's default does."""
    from framework.registry import REGISTRIES, TRAIN_PLUGINS
    from framework.training.config import SECTIONS

    out = dict(config)
    for group, registry in REGISTRIES.items():
        node = out.get(group)
        if isinstance(node, Mapping) and node.get("name") in registry:
            out[group] = {**registry.defaults(str(node["name"])), **node}
    train = out.get("train")
    if isinstance(train, Mapping):
        defaults = dict(_schema_defaults(SECTIONS["train"]))
        for registry in TRAIN_PLUGINS.values():
            for name in registry.names():
                defaults.update({k: v for k, v in registry.defaults(name).items()
                                 if k != "name"})
        out["train"] = {**defaults, **train}
    model = out.get("model")
    if isinstance(model, Mapping):
        out["model"] = {**_schema_defaults(SECTIONS["model"]), **model}
    return out


def _schema_defaults(schema: type) -> dict[str, Any]:
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # a nested section (model.embedding)
            value = f.default_factory()
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def conflicts(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: saved -> current`` for every resume-relevant setting that differs."""
    old, new = _flat(_with_defaults(saved)), _flat(_with_defaults(current))
    must = must_match()
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in RUNTIME_ONLY and any(key == m or key.startswith(m + ".") for m in must):
            if old.get(key) != new.get(key):
                out.append(f"{key}={old.get(key)!r} in the checkpoint, {new.get(key)!r} now")
    return out


def check_resume(meta: CheckpointMeta, *, config: Mapping[str, Any], vocab: Vocab,
                 params: Mapping[str, np.ndarray], steps: int) -> None:
    """Refuse a checkpoint the configured run cannot continue; runs before any array is read.

    ``config`` is the new run's resolved config, ``params`` its freshly built parameters and
    ``steps`` its ``train.steps``.
    """
    if not meta.config:
        raise CheckpointError(f"resume: {meta.where} has no saved config; it is not an rnnlab "
                              f"training checkpoint")
    diff = conflicts(meta.config, config)
    if diff:
        raise CheckpointError("resume: the config conflicts with the checkpoint (" + "; ".join(diff)
                              + "); drop those overrides or start a new run")
    if meta.vocab != vocab:
        raise CheckpointError("resume: the dataset's vocabulary differs from the checkpoint's; "
                              "resume on the data it was trained on")
    have = {k: (tuple(s), meta.model.dtype) for k, s in meta.model.param_shapes.items()}
    want = {k: (tuple(v.shape), v.dtype) for k, v in params.items()}
    if have != want:
        odd = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise CheckpointError(f"resume: {meta.where} holds another model than the config builds "
                              f"(parameters {odd[:5]} differ); it is from another model")
    if meta.smooth_loss is None:
        raise CheckpointError(f"resume: {meta.where} has no smooth_loss; resume needs a "
                              f"checkpoint written by a training run")
    if meta.step >= steps:
        where = "= train.steps" if meta.step == steps else f"> train.steps={steps}"
        raise CheckpointError(f"{meta.where} is at step {meta.step} {where}; nothing to train: "
                              f"raise train.steps to continue")


def read_for_resume(path: str | os.PathLike[str], *, config: Mapping[str, Any], vocab: Vocab,
                    params: Mapping[str, np.ndarray], steps: int) -> Checkpoint:
    """:func:`read_checkpoint` with :func:`check_resume`, requiring optimizer and carried state."""
    return read_checkpoint(
        path, for_resume=True,
        check=lambda meta: check_resume(meta, config=config, vocab=vocab, params=params,
                                        steps=steps))


__all__ = ["MUST_MATCH", "RUNTIME_ONLY", "check_resume", "conflicts", "must_match",
           "read_for_resume"]
