"""Finding the checkpoint that ``resume=`` names, and refusing one that does not fit the config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from framework.errors import CheckpointError
from framework.training.config import RunConfig

RUN_ID = re.compile(r"^[0-9a-f]{32}$")

# Settings that must match for a resumed run to continue the same training, besides the options
# of every feed (must_match()). Everything else (the number of steps, logging cadence, sampling,
# tracking) may change when resuming.
MUST_MATCH = ("cell", "dataset", "optimizer", "clip", "model", "seed", "dtype",
              "train.batch_size", "train.seq_len", "train.feed", "train.loss", "train.smoothing")


def must_match() -> tuple[str, ...]:
    """MUST_MATCH and every feed's train.* options: batches are a function of them."""
    from framework.registry import FEEDS

    return (*MUST_MATCH, *sorted({f"train.{key}" for name in FEEDS.names()
                                  for key in FEEDS.option_names(name)}))


def resolve(target: str, download: Any = None) -> Path:
    """A checkpoint file from a file path, a run directory, or an MLflow run id.

    ``download(run_id) -> Path`` fetches a run's latest checkpoint (given by the tracker).
    """
    path = Path(target).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "latest.npz", path / "latest.npz"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"resume: directory {path} holds no checkpoints/latest.npz")
    if path.is_file():
        return path
    if RUN_ID.match(target) and download is not None:
        return download(target)
    raise CheckpointError(f"resume: '{target}' is neither a checkpoint file nor an MLflow run id; "
                          "pass the path of a .npz checkpoint or a run id")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def conflicts(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: saved -> current`` for every resume-relevant setting that differs."""
    old, new = _flat(saved), _flat(current)
    must = must_match()
    out = []
    for key in sorted(set(old) | set(new)):
        if any(key == m or key.startswith(m + ".") for m in must):
            if old.get(key) != new.get(key):
                out.append(f"{key}={old.get(key)!r} in the checkpoint, {new.get(key)!r} now")
    return out


def check_resume_compatible(meta: dict[str, Any], rc: RunConfig, vocab: Any) -> None:
    saved_config = meta.get("config")
    if not isinstance(saved_config, dict):
        raise CheckpointError("resume: checkpoint has no saved config; it is not an rnnlab "
                              "training checkpoint")
    diff = conflicts(saved_config, rc.raw)
    if diff:
        raise CheckpointError("resume: the config conflicts with the checkpoint (" + "; ".join(diff)
                              + "); drop those overrides or start a new run")
    if meta.get("vocab") != vocab.to_json():
        raise CheckpointError("resume: the dataset's vocabulary differs from the checkpoint's; "
                              "resume on the data it was trained on")
