"""Checkpoint files: round trip, atomic rolling saves, and one-line errors for bad files."""

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

from framework.errors import CheckpointError
from framework.training.checkpoint import (
    FORMAT_VERSION,
    META_KEY,
    check_compatible,
    list_step_checkpoints,
    load_checkpoint,
    make_meta,
    pack_state,
    remove_stale_temp_files,
    save_checkpoint,
    save_rolling,
    unpack_state,
)

ROOT = Path(__file__).resolve().parent.parent


def _meta(**kw):
    base = dict(cell="gru", hidden_size=4, num_layers=1, dropout=0.0, init="xavier",
                dtype="float32", cell_options={}, vocab_json={"chars": ["\n", "a", "b"]},
                step=3, dataset="dinos", optimizer="adam", config={"seed": 1})
    base.update(kw)
    return make_meta(**base)


def test_round_trip_keeps_arrays_dtypes_and_meta(tmp_path):
    arrays = {
        "param/layers.0.W_x": np.arange(12, dtype=np.float32).reshape(3, 4),
        "param/out.b": np.zeros(3, dtype=np.float64),
        "optim/t": np.array(7, dtype=np.int64),
        **pack_state([(np.ones((2, 4)), np.full((2, 4), 2.0))]),
    }
    path = save_checkpoint(tmp_path / "c.npz", arrays, _meta())
    assert path == tmp_path / "c.npz"
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temp file left behind
    loaded, meta = load_checkpoint(path)
    assert set(loaded) == set(arrays)
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype and np.array_equal(loaded[k], v)
    assert meta["format_version"] == FORMAT_VERSION and meta["cell"] == "gru"
    assert meta["model"]["hidden_size"] == 4 and meta["config"] == {"seed": 1}
    assert "created" in meta
    state = unpack_state(loaded)
    assert len(state) == 1 and len(state[0]) == 2 and state[0][1][0, 0] == 2.0
    with zipfile.ZipFile(path) as zf:  # metadata lives inside the npz as a uint8 member
        assert f"{META_KEY}.npy" in zf.namelist()


def test_rolling_latest_best_and_pruning(tmp_path):
    d = tmp_path / "ckpt"
    for step in (1, 2, 3, 4):
        save_rolling(d, step, {"param/x": np.full(3, step)}, _meta(step=step),
                     best=step == 2, keep_last=2)
    assert [p.name for p in list_step_checkpoints(d)] == ["step_000003.npz", "step_000004.npz"]
    assert load_checkpoint(d / "latest.npz")[1]["step"] == 4
    arrays, meta = load_checkpoint(d / "best.npz")  # survives pruning of step_000002.npz
    assert meta["step"] == 2 and arrays["param/x"][0] == 2
    assert remove_stale_temp_files(d) == 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p, "not found"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_text("hello"), p)[1], "not an .npz"),
        (lambda p: (np.save(p.open("wb"), np.zeros(3)), p)[1], "not an .npz"),
        (lambda p: (np.savez(p, a=np.zeros(3)), p)[1], "no __meta__"),
    ],
    ids=["missing", "directory", "text", "npy", "plain-npz"],
)
def test_bad_paths_give_one_line_errors(tmp_path, make, match):
    path = make(tmp_path / "x.npz")
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_truncated_and_corrupt_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.npz", {"param/x": np.random.rand(1000)}, _meta())
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


def test_wrong_format_version_and_bad_meta(tmp_path):
    save_checkpoint(tmp_path / "v.npz", {"param/x": np.zeros(2)}, _meta(format_version=99))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(tmp_path / "v.npz")
    np.savez(tmp_path / "m.npz", __meta__=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "m.npz")


def test_object_arrays_are_refused_never_unpickled(tmp_path, monkeypatch):
    meta = np.frombuffer(json.dumps({"format_version": FORMAT_VERSION}).encode(), dtype=np.uint8)
    evil = np.array([{"a": 1}, None], dtype=object)
    np.savez(tmp_path / "evil.npz", allow_pickle=True, __meta__=meta, **{"param/x": evil})
    import pickle

    def boom(*a, **k):
        raise AssertionError("pickle must never be used")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    with pytest.raises(CheckpointError, match="object array"):
        load_checkpoint(tmp_path / "evil.npz")
    with pytest.raises(CheckpointError, match="dtype object"):
        save_checkpoint(tmp_path / "s.npz", {"x": evil}, {})


def test_check_compatible():
    meta = _meta()
    check_compatible(meta, cell="gru", vocab_chars=["\n", "a", "b"], hidden_size=4)
    with pytest.raises(CheckpointError, match="for cell 'gru' but the config says 'lstm'"):
        check_compatible(meta, cell="lstm")
    with pytest.raises(CheckpointError, match="vocabulary"):
        check_compatible(meta, vocab_chars=["\n", "a", "c"])
    with pytest.raises(CheckpointError, match="hidden_size"):
        check_compatible(meta, hidden_size=8)


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from framework.training.checkpoint import save_rolling
    d = sys.argv[1]
    step = 0
    while True:
        step += 1
        arrays = {"param/w": np.full(400_000, step, dtype=np.float32),
                  "param/b": np.full(7, step, dtype=np.int64)}
        save_rolling(d, step, arrays, {"format_version": 1, "step": step}, keep_last=3)
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
            while not (d / "latest.npz").exists() and time.monotonic() - t0 < 5:
                time.sleep(0.01)
            time.sleep(rnd.uniform(0.0, 0.25))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        arrays, meta = load_checkpoint(d / "latest.npz")
        step = meta["step"]
        assert step >= 1
        assert np.all(arrays["param/w"] == step) and np.all(arrays["param/b"] == step)
        last_step = step
        if time.monotonic() > deadline:
            break
    assert last_step >= 1
    remove_stale_temp_files(d)
    assert not list(d.glob(".tmp-*"))
