"""Which checkpoint file ``resume=``, ``checkpoint=`` or ``run_id=`` names: a file, a run
directory, or an MLflow run id."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from framework.errors import CheckpointError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow run ids are uuid4 hex strings


def resolve_checkpoint(target: str | os.PathLike[str],
                       download: Callable[[str], Path] | None = None) -> Path:
    """The checkpoint file that ``resume=``, ``checkpoint=`` or ``run_id=`` names.

    ``target`` is a ``.npz`` file, a run directory (its ``checkpoints/latest.npz`` or
    ``latest.npz``), or, when ``download(run_id) -> Path`` is given, an MLflow run id.
    """
    text = str(target)
    path = Path(text).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "latest.npz", path / "latest.npz"):
            if candidate.exists():
                return candidate
        raise CheckpointError(f"directory {path} holds no checkpoints/latest.npz or latest.npz; "
                              f"pass a .npz checkpoint file or a run directory")
    if path.exists() or path.is_symlink():
        return path
    if download is not None:
        if RUN_ID.match(text):
            return download(text)
        raise CheckpointError(f"'{text}' is neither a checkpoint file nor an MLflow run id; pass "
                              f"the path of a .npz checkpoint, a run directory or a run id")
    raise CheckpointError(f"checkpoint {path} not found; check the path")



__all__ = ["RUN_ID", "resolve_checkpoint"]
