"""Checkpoints: rnnlab's ``.npz`` files written, read, checked, found and resumed from.

The package is split by idea: :mod:`.files` (the format, atomic writing, the rolling directory),
:mod:`.metadata` (the JSON schema, what a run writes, validation), :mod:`.fields` (the checks of
untrusted fields), :mod:`.memory` (the memory a file may take), :mod:`.arrays` (state packing and
the members a metadata allows), :mod:`.reading` (reading and rebuilding the model through its
task), :mod:`.paths` (``checkpoint=``/``run_id=``/``resume=``) and :mod:`.resume` (the
compatibility check).  What differs by task lives in the task plugins (``framework/tasks/``).

Loading treats the file as untrusted input, memory included: the metadata is validated first
(types, ranges, a registered cell and task whose schemas accept the options, a model whose size
fits in memory), every array's shape and dtype is derived from it, and each member is read only
after its zip entry and ``.npy`` header match (:mod:`framework.training.safe_npz`).  Unknown or
missing members, object arrays and truncated files are one-line :class:`CheckpointError`
messages.
"""

from framework.training.checkpoint.arrays import Checkpoint, expected_arrays, pack_arrays
from framework.training.checkpoint.files import (
    FORMAT_VERSION,
    META_KEY,
    OPTIM_PREFIX,
    PARAM_PREFIX,
    STATE_PREFIX,
    TMP_PREFIX,
    list_step_checkpoints,
    remove_stale_temp_files,
    save_checkpoint,
    save_rolling,
    step_path,
)
from framework.training.checkpoint.memory import memory_limit
from framework.training.checkpoint.metadata import (
    CheckpointMeta,
    ModelSpec,
    build_meta,
    parse_meta,
    run_meta,
)
from framework.training.checkpoint.paths import RUN_ID, resolve_checkpoint
from framework.training.checkpoint.reading import (
    build_model,
    build_model_from_checkpoint,
    load_checkpoint,
    load_model,
    read_checkpoint,
)
from framework.training.checkpoint.resume import (
    MUST_MATCH,
    check_resume,
    conflicts,
    must_match,
    read_for_resume,
)

__all__ = ["FORMAT_VERSION", "META_KEY", "MUST_MATCH", "OPTIM_PREFIX", "PARAM_PREFIX", "RUN_ID",
           "STATE_PREFIX", "TMP_PREFIX", "Checkpoint", "CheckpointMeta", "ModelSpec", "build_meta",
           "build_model", "build_model_from_checkpoint", "check_resume", "conflicts",
           "expected_arrays", "list_step_checkpoints", "load_checkpoint", "load_model",
           "memory_limit", "must_match", "pack_arrays", "parse_meta", "read_checkpoint",
           "read_for_resume", "remove_stale_temp_files", "resolve_checkpoint", "run_meta",
           "save_checkpoint", "save_rolling", "step_path"]
