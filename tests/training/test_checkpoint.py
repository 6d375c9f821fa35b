"""Checkpoint files: round trip, atomic rolling saves, path resolution, the resume check, and
one-line errors for bad files.  Hostile files (memory bombs, tampered metadata) are in
tests/training/test_checkpoint_untrusted.py."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from framework.data.vocab import Vocab
from framework.errors import CheckpointError
from framework.nn.models.language_model import CharRNN, param_shapes
from framework.plugins import load_plugins
from framework.registry import CELLS
from framework.training.checkpoint import (
    FORMAT_VERSION,
    META_KEY,
    check_resume,
    list_step_checkpoints,
    load_checkpoint,
    load_model,
    parse_meta,
    read_checkpoint,
    remove_stale_temp_files,
    resolve_checkpoint,
    save_checkpoint,
    save_rolling,
)
from tests.helpers import model_checkpoint

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
load_plugins()


def test_round_trip_keeps_arrays_dtypes_and_meta(tmp_path):
    arrays, meta = model_checkpoint(cell="lstm", num_layers=2, state_rows=3)
    path = save_checkpoint(tmp_path / "c.npz", arrays, meta)
    assert path == tmp_path / "c.npz"
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temp file left behind
    loaded, raw = load_checkpoint(path)
    assert set(loaded) == set(arrays)
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype and np.array_equal(loaded[k], v), k
    assert raw["format_version"] == FORMAT_VERSION and raw["cell"] == "lstm"
    assert raw["model"]["hidden_size"] == 4 and raw["config"]["seed"] == 1
    assert "created" in raw
    ckpt = read_checkpoint(path)
    state = ckpt.carried_state
    assert len(state) == 2 and len(state[0]) == 2 and state[1][1].shape == (3, 4)
    assert set(ckpt.optimizer_state) == {"t"} | {f"{s}.{k}" for s in ("m", "v")
                                                 for k in ckpt.params}
    with zipfile.ZipFile(path) as zf:  # metadata lives inside the npz as a uint8 member
        assert f"{META_KEY}.npy" in zf.namelist()


def test_rolling_latest_best_and_pruning(tmp_path):
    d = tmp_path / "ckpt"
    for step in (1, 2, 3, 4):
        arrays, meta = model_checkpoint(fill=step, step=step)
        save_rolling(d, step, arrays, meta, best=step == 2, keep_last=2)
    assert [p.name for p in list_step_checkpoints(d)] == ["step_000003.npz", "step_000004.npz"]
    assert load_checkpoint(d / "latest.npz")[1]["step"] == 4
    arrays, meta = load_checkpoint(d / "best.npz")  # survives pruning of step_000002.npz
    assert meta["step"] == 2 and arrays["param/out.b"][0] == 2
    assert remove_stale_temp_files(d) == 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p, "not found"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_text("hello"), p)[1], "not an .npz"),
        (lambda p: (np.save(p.open("wb"), np.zeros(3)), p)[1], "not an .npz"),
        (lambda p: (np.savez(p, a=np.zeros(3)), p)[1], "no __meta__"),
        (lambda p: (os.mkfifo(p), p)[1], "not a regular file"),
        (lambda p: (p.write_bytes(b""), p)[1], "not an .npz"),
    ],
    ids=["missing", "directory", "text", "npy", "plain-npz", "fifo", "empty"],
)
def test_bad_paths_give_one_line_errors(tmp_path, make, match):
    path = make(tmp_path / "x.npz")
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_truncated_and_corrupt_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.npz", *model_checkpoint(hidden_size=16))
    data = good.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
            load_checkpoint(bad)
        assert "\n" not in str(info.value)
    flipped = bytearray(data)
    flipped[200] ^= 0xFF  # inside the first member's data: CRC mismatch
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "flip.npz")


def test_every_truncation_is_a_one_line_error(tmp_path):
    data = save_checkpoint(tmp_path / "good.npz", *model_checkpoint(state_rows=2)).read_bytes()
    bad = tmp_path / "cut.npz"
    for cut in range(0, len(data), max(1, len(data) // 97)):
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(bad)
        assert "\n" not in str(info.value), cut


def test_wrong_format_version_and_bad_meta(tmp_path):
    arrays, meta = model_checkpoint()
    save_checkpoint(tmp_path / "v.npz", arrays, {**meta, "format_version": 99})
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(tmp_path / "v.npz")
    np.savez(tmp_path / "m.npz", __meta__=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "m.npz")


def test_object_arrays_are_refused_never_unpickled(tmp_path, monkeypatch):
    arrays, meta = model_checkpoint()
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    evil = np.array([{"a": 1}, None], dtype=object)
    np.savez(tmp_path / "evil.npz", allow_pickle=True, __meta__=blob,
             **{**arrays, "param/out.b": evil})
    import pickle

    def boom(*a, **k):
        raise AssertionError("pickle must never be used")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    with pytest.raises(CheckpointError, match="object array"):
        load_checkpoint(tmp_path / "evil.npz")
    with pytest.raises(CheckpointError, match="dtype object"):
        save_checkpoint(tmp_path / "s.npz", {"x": evil}, {})


def test_fortran_ordered_arrays_load_equal(tmp_path):
    arrays, meta = model_checkpoint(hidden_size=6)
    arrays = {k: np.asfortranarray(v) if v.ndim == 2 else v for k, v in arrays.items()}
    assert not arrays["param/out.W"].flags.c_contiguous
    path = save_checkpoint(tmp_path / "f.npz", arrays, meta)
    loaded, _ = load_checkpoint(path)
    for k, v in arrays.items():
        assert np.array_equal(loaded[k], v), k


@pytest.mark.parametrize("cell", CELLS.names())
@pytest.mark.parametrize("init", ["xavier", "course"])
def test_param_shapes_match_init_params(cell, init):
    """Checkpoints are checked against shapes computed without allocating: they must be the
    shapes init_params really makes, for every registered cell."""
    model = CharRNN(cell, 7, 5, num_layers=3, init=init)
    rng = np.random.RandomState(0) if init == "course" else np.random.default_rng(0)
    params = model.init_params(rng)
    shapes = param_shapes(model.cell, 7, 3)
    assert list(shapes) == list(params)
    assert shapes == {k: v.shape for k, v in params.items()}


def test_checkpoints_written_before_this_format_module_still_load():
    """Files written by the trainer as it was before checkpoint reading was rewritten."""
    for path in sorted((FIXTURES / "format1").glob("*.npz")):
        ckpt = read_checkpoint(path)
        assert ckpt.carried_state is not None and "t" in ckpt.optimizer_state
        model, vocab, meta = load_model(path)
        assert meta.step == 6 and meta.smooth_loss is not None
        logits, _ = model.step(np.array([0]), model.zero_state(1))
        assert logits.shape == (1, vocab.size) and np.isfinite(logits).all()


# ------------------------------------------------------------------------- path resolution
def test_resolve_checkpoint_file_directory_and_run_id(tmp_path):
    f = tmp_path / "a.npz"
    f.write_bytes(b"")
    assert resolve_checkpoint(f) == f
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.npz").write_bytes(b"")
    assert resolve_checkpoint(run) == run / "checkpoints" / "latest.npz"
    assert resolve_checkpoint(run / "checkpoints") == run / "checkpoints" / "latest.npz"
    with pytest.raises(CheckpointError, match="holds no checkpoints/latest.npz"):
        resolve_checkpoint(tmp_path / "run" / "..")
    run_id = "0123456789abcdef" * 2
    assert resolve_checkpoint(run_id, download=lambda rid: tmp_path / rid) == tmp_path / run_id
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(run_id)  # no download: a path, and there is none
    with pytest.raises(CheckpointError, match="neither a checkpoint file nor an MLflow run id"):
        resolve_checkpoint(str(tmp_path / "nope.npz"), download=lambda rid: f)


# ----------------------------------------------------------------------------- resume check
def _resume_meta(**kw):
    arrays, meta = model_checkpoint(state_rows=4, **kw)
    return arrays, parse_meta(meta, "c.npz")


def test_check_resume():
    arrays, meta = _resume_meta()
    vocab = Vocab(tuple("\nab"))
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    config = dict(meta.config)
    check_resume(meta, config=config, vocab=vocab, params=params, steps=10)
    with pytest.raises(CheckpointError, match=r"config conflicts .*seed=1 in the checkpoint, 2"):
        check_resume(meta, config={**config, "seed": 2}, vocab=vocab, params=params, steps=10)
    with pytest.raises(CheckpointError, match="vocabulary differs"):
        check_resume(meta, config=config, vocab=Vocab(tuple("\nac")), params=params, steps=10)
    bigger = {**params, "out.b": np.zeros(5, np.float32)}
    with pytest.raises(CheckpointError, match=r"another model .*'out.b'"):
        check_resume(meta, config=config, vocab=vocab, params=bigger, steps=10)
    with pytest.raises(CheckpointError, match="is at step 3 = train.steps; nothing to train: "
                                              "raise train.steps to continue"):
        check_resume(meta, config=config, vocab=vocab, params=params, steps=3)
    with pytest.raises(CheckpointError, match="step 3 > train.steps=2; nothing to train"):
        check_resume(meta, config=config, vocab=vocab, params=params, steps=2)
    _, no_loss = _resume_meta(smooth_loss=None)
    with pytest.raises(CheckpointError, match="no smooth_loss"):
        check_resume(no_loss, config=config, vocab=vocab, params=params, steps=10)
    _, no_config = _resume_meta(config=None)
    with pytest.raises(CheckpointError, match="no saved config"):
        check_resume(no_config, config=config, vocab=vocab, params=params, steps=10)


_WRITER = textwrap.dedent(
    """
    import sys
    from framework.training.checkpoint import save_rolling
    from tests.helpers import model_checkpoint
    d = sys.argv[1]
    step = 0
    while True:
        step += 1
        arrays, meta = model_checkpoint(hidden_size=300, fill=step, step=step, optimizer=None)
        save_rolling(d, step, arrays, meta, keep_last=3)
    """
)


def test_latest_survives_sigkill_at_random_moments(tmp_path):
    """A writer killed at any moment never leaves a broken latest.npz."""
    rnd = random.Random(1234)
    d = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    deadline = time.monotonic() + 12.0
    last_step = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(d)], env=env)
        try:
            t0 = time.monotonic()
            while not (d / "latest.npz").exists() and time.monotonic() - t0 < 30:
                time.sleep(0.01)
            time.sleep(rnd.uniform(0.0, 0.25))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        arrays, meta = load_checkpoint(d / "latest.npz")
        step = meta["step"]
        assert step >= 1
        assert all(np.all(a == step) for a in arrays.values())
        last_step = step
        if time.monotonic() > deadline:
            break
    assert last_step >= 1
    remove_stale_temp_files(d)
    assert not list(d.glob(".tmp-*"))


@pytest.mark.parametrize("cell", CELLS.names())
@pytest.mark.parametrize("bidirectional", [False, True])
def test_many_to_one_param_shapes_match_init_params(cell, bidirectional):
    """The classifier's and forecaster's shapes, which checkpoints are checked against, are the
    ones init_params makes, in its order (one or two stacks, then the head)."""
    from framework.nn.models.many_to_one import SequenceClassifier, SequenceForecaster

    for model in (SequenceClassifier(cell, 7, 3, 5, num_layers=2, bidirectional=bidirectional),
                  SequenceForecaster(cell, 2, 4, 5, num_layers=2, ids=False,
                                     bidirectional=bidirectional)):
        params = model.init_params(np.random.default_rng(0))
        shapes = model.param_shapes()
        assert list(shapes) == list(params)
        assert shapes == {k: v.shape for k, v in params.items()}
