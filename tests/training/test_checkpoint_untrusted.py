"""Checkpoints are untrusted input, memory included: hostile files give one line, allocate nothing
big, and never reach NumPy's own loader.

Each case builds its file by hand (zip members with chosen ``.npy`` headers, sizes and metadata)
and checks the one-line :class:`CheckpointError`.  The memory cases run the loader in a
subprocess and compare its peak RSS (``getrusage``) before and after the load.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from framework.errors import CheckpointError
from framework.training.checkpoint import (
    META_KEY,
    load_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from framework.training.checkpoint import memory as ckpt_memory
from tests.helpers import model_checkpoint

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------- file builders
def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_header(shape: tuple, descr: str = "<f4", version: tuple = (1, 0)) -> bytes:
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def meta_bytes(meta: dict) -> bytes:
    return npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def write_zip(path: Path, members: dict[str, bytes], *, deflate: bool = False) -> Path:
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def members_of(arrays: dict, meta: dict) -> dict[str, bytes]:
    out = {f"{k}.npy": npy(v) for k, v in arrays.items()}
    out[f"{META_KEY}.npy"] = meta_bytes(meta)
    return out


def one_line(path: Path, loader=load_checkpoint) -> str:
    with pytest.raises(CheckpointError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


_PEAK = textwrap.dedent(
    """
    import resource, sys
    from framework.errors import CheckpointError
    from framework.plugins import load_plugins
    from framework.training.checkpoint import load_checkpoint
    load_plugins()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_checkpoint(sys.argv[1])
        print("loaded")
    except CheckpointError as exc:
        print(exc)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """
)


def load_in_subprocess(path: Path) -> tuple[str, int]:
    """(message, growth of the peak RSS in MiB) of load_checkpoint(path) in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _PEAK, str(path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    message, grown = proc.stdout.strip().splitlines()
    return message, int(grown)


# ------------------------------------------------------------------------------- memory bombs
def test_a_45kb_file_whose_header_declares_terabytes(tmp_path):
    arrays, meta = model_checkpoint()
    members = members_of(arrays, meta)
    # A 45 KB file: 40 KB of data under a header declaring a (10**6, 10**6) float32 array (4 TB).
    members["param/out.W.npy"] = npy_header((10**6, 10**6)) + os.urandom(40_000)
    path = write_zip(tmp_path / "tb.npz", members)
    assert 44_000 < path.stat().st_size < 48_000
    message, grown = load_in_subprocess(path)
    assert "parameter 'out.W' declares 40128 bytes uncompressed" in message, message
    assert grown < 30, f"peak RSS grew by {grown} MiB"
    # The same header over exactly as many bytes as the metadata implies: the header is read,
    # compared with the expected shape, and refused before any data is read.
    members["param/out.W.npy"] = npy_header((10**6, 10**6)) + os.urandom(48)
    path = write_zip(tmp_path / "tb2.npz", members)
    message, grown = load_in_subprocess(path)
    assert "parameter 'out.W' has shape (1000000, 1000000) float32, expected (4, 3) float32" \
        in message, message
    assert grown < 30, f"peak RSS grew by {grown} MiB"
    for loader in (load_checkpoint, load_model):
        assert one_line(path, loader) == message


def _zeros_member(zf: zipfile.ZipFile, name: str, head: bytes, zeros: int) -> None:
    with zf.open(name, "w") as fh:
        fh.write(head)
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            fh.write(block)


def test_zip_bomb_member_with_honest_sizes_is_refused_before_reading(tmp_path):
    """~200 MB of zeros compressed to ~200 KB, declared as such in the zip directory."""
    arrays, meta = model_checkpoint()
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members_of(arrays, meta).items():
            if name == "param/out.W.npy":
                _zeros_member(zf, name, npy_header((50 * 2**20,)), 200 << 20)
            else:
                zf.writestr(name, data)
    assert path.stat().st_size < 1 << 20
    message, grown = load_in_subprocess(path)
    assert "parameter 'out.W' declares 209715328 bytes uncompressed" in message, message
    assert "expected at most 48 bytes" in message
    assert grown < 30, f"peak RSS grew by {grown} MiB"


def _patch_uncompressed_size(path: Path, member: str, size: int) -> None:
    """Rewrite ``member``'s uncompressed size in its local header and directory entry."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = 0
    while (at := data.find(b"PK\x03\x04", at)) >= 0:
        n = struct.unpack_from("<H", data, at + 26)[0]
        if data[at + 30:at + 30 + n] == name:
            struct.pack_into("<L", data, at + 22, size)
        at += 4
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + n] == name:
            struct.pack_into("<L", data, at + 24, size)
        at += 4
    path.write_bytes(bytes(data))


def test_zip_bomb_member_that_inflates_beyond_its_declared_size_is_cut_off(tmp_path):
    """The directory says 176 bytes, the deflate stream holds ~200 MB of zeros: reading stops at
    the declared size (and then fails the CRC), with no big allocation."""
    arrays, meta = model_checkpoint()
    honest = npy(arrays["param/out.W"])
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members_of(arrays, meta).items():
            if name == "param/out.W.npy":
                _zeros_member(zf, name, honest, 200 << 20)
            else:
                zf.writestr(name, data)
    _patch_uncompressed_size(path, "param/out.W.npy", len(honest))
    message, grown = load_in_subprocess(path)
    assert "truncated or corrupt" in message and "CRC" in message, message
    assert grown < 30, f"peak RSS grew by {grown} MiB"


def test_npy_header_length_claiming_gigabytes_is_capped(tmp_path):
    arrays, meta = model_checkpoint()
    members = members_of(arrays, meta)
    # A version 2.0 header whose 4-byte length field says ~4 GB of header text follows.
    members["param/out.b.npy"] = b"\x93NUMPY\x02\x00" + struct.pack("<L", 0xFFFFFFF0) + b"{" * 64
    message = one_line(write_zip(tmp_path / "h.npz", members))
    assert "truncated or corrupt" in message, message


def test_a_zip_listing_too_many_members_is_refused_before_parsing(tmp_path):
    arrays, meta = model_checkpoint()
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members_of(arrays, meta).items():
            zf.writestr(name, data)
        for i in range(17_000):
            zf.writestr(f"x{i}.npy", b"")
        count = len(zf.infolist())
    assert f"lists {count} members" in one_line(path)


@pytest.mark.parametrize("hidden, layers, needle", [
    (10**9, 1, "'model.hidden_size' must be an integer in [1, 1048576], got 1000000000"),
    (8, 10**6, "'model.num_layers' must be an integer in [1, 1024], got 1000000"),
    (100_000, 4, "describes a model of 210,002,400,003 parameters (840.0 GB"),
])
def test_metadata_claiming_a_huge_model_is_refused_before_any_allocation(tmp_path, hidden, layers,
                                                                          needle):
    arrays, meta = model_checkpoint()
    meta["model"].update(hidden_size=hidden, num_layers=layers)
    path = write_zip(tmp_path / "huge.npz", members_of(arrays, meta))
    message, grown = load_in_subprocess(path)
    assert needle in message, message
    assert grown < 30, f"peak RSS grew by {grown} MiB"
    assert needle in one_line(path, load_model)


def test_the_total_size_is_checked_against_the_memory_available(tmp_path, monkeypatch):
    arrays, meta = model_checkpoint(hidden_size=32)  # adam: the buffers double the parameters
    path = save_checkpoint(tmp_path / "c.npz", arrays, meta)
    param_bytes = sum(v.nbytes for k, v in arrays.items() if k.startswith("param/"))
    monkeypatch.setattr(ckpt_memory, "memory_limit", lambda: int(param_bytes * 1.5))
    assert "needs" in one_line(path) and "of memory, more than the" in one_line(path)
    load_model(path)  # generation reads the parameters only: they fit
    monkeypatch.setattr(ckpt_memory, "memory_limit", lambda: param_bytes // 2)
    assert "describes a model of" in one_line(path, load_model)


# ------------------------------------------------------------------------------- metadata fields
def _with(meta: dict, dotted: str, value) -> dict:
    meta = json.loads(json.dumps(meta))
    node = meta
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    if value is _DROP:
        del node[leaf]
    else:
        node[leaf] = value
    return meta


class _Dropped:
    """The marker for "remove this field" (a stable repr: test ids must be the same in every
    process that collects them)."""

    def __repr__(self) -> str:
        return "<dropped>"


_DROP = _Dropped()
BAD_FIELDS = [
    ("format_version", True, "format_version True"),
    ("format_version", "1", "format_version '1'"),
    ("format_version", 1.0, "format_version 1.0"),
    ("format_version", _DROP, "format_version None"),
    ("step", 3.0, "'step' must be an integer in [0,"),
    ("step", "3", "'step' must be an integer"),
    ("step", True, "'step' must be an integer"),
    ("step", -1, "'step' must be an integer"),
    ("step", None, "'step' must be an integer"),
    ("step", _DROP, "metadata lacks step"),
    ("smooth_loss", "1.5", "'smooth_loss' must be a finite number or null"),
    ("smooth_loss", float("nan"), "'smooth_loss' must be a finite number"),
    ("smooth_loss", float("inf"), "'smooth_loss' must be a finite number"),
    ("smooth_loss", True, "'smooth_loss' must be a finite number"),
    ("smooth_loss", [1.0], "'smooth_loss' must be a finite number"),
    ("best_val_loss", "x", "'best_val_loss' must be a finite number or null"),
    ("best_val_loss", float("-inf"), "'best_val_loss' must be a finite number"),
    ("cell", 5, "'cell' must be a non-empty string"),
    ("cell", "nosuchcell", "unknown cell 'nosuchcell'"),
    ("cell", _DROP, "metadata lacks cell"),
    ("model", [], "'model' must be a JSON object"),
    ("model.hidden_size", 8.0, "'model.hidden_size' must be an integer"),
    ("model.hidden_size", "4", "'model.hidden_size' must be an integer"),
    ("model.hidden_size", 0, "'model.hidden_size' must be an integer in [1,"),
    ("model.num_layers", 0, "'model.num_layers' must be an integer in [1,"),
    ("model.num_layers", _DROP, "'model' lacks num_layers"),
    ("model.dropout", 1.0, "'model.dropout' must be in [0, 1)"),
    ("model.dropout", "0", "'model.dropout' must be a finite number"),
    ("model.init", "bogus", "does not build a model"),
    ("model.init", 3, "'model.init' must be a non-empty string"),
    ("model.dtype", "float16", "'model.dtype' must be one of float32, float64"),
    ("model.cell_options", {"forget_bias": 1.0}, "does not build a model"),
    ("model.cell_options", {"hidden_size": 3}, "repeats hidden_size"),
    ("model.cell_options", "x", "'model.cell_options' must be a JSON object"),
    ("model.extra", 1, "'model' has unknown key(s) 'extra'"),
    ("vocab", "garbage", "vocabulary is unreadable"),
    ("vocab", {"format": "rnnlab-vocab", "version": 1, "chars": ["b", "a"]}, "vocabulary"),
    ("vocab", 7, "vocabulary is unreadable"),
    ("dataset", 5, "'dataset' must be a non-empty string or null"),
    ("corpus_kind", "images",
     "'corpus_kind' must be one of lines, stream, labelled, series, sequences, parallel or "
     "null"),
    ("optimizer", 3, "'optimizer' must be a non-empty string or null"),
    ("generate", {"window": 0}, "'generate.window' must be an integer in [1,"),
    ("generate", {"window": 2.5}, "'generate.window' must be an integer"),
    ("generate", {"beam": 2}, "'generate' has unknown key(s) 'beam'"),
    ("config", [], "'config' must be a JSON object"),
    ("config.train", {"batch_size": "4"}, "'config.train.batch_size' must be an integer"),
    ("config.train", {"batch_size": 0}, "'config.train.batch_size' must be an integer"),
    ("config.train", {"sample_length": -3}, "'config.train.sample_length' must be an integer"),
    ("config.sampler", ["top_k"], "'config.sampler' must be a JSON object"),
    ("config.sampler", {"k": 3}, "'config.sampler.name' must be a non-empty string"),
    ("created", 12, "'created' must be a non-empty string or null"),
    ("rng_state", [1, 2], "unknown field(s) 'rng_state'"),
    ("config.deep", json.loads("[" * 40 + "]" * 40), "nested more than 32 levels"),
]


@pytest.mark.parametrize("field, value, needle", BAD_FIELDS,
                         ids=[f"{f}={v!r}"[:40] for f, v, _ in BAD_FIELDS])
def test_every_metadata_field_is_checked_before_any_array(tmp_path, field, value, needle):
    arrays, meta = model_checkpoint(cell="gru" if "cell_options" not in field else "rnn")
    members = members_of(arrays, _with(meta, field, value))
    # Every array member is garbage: the metadata must be refused before any is looked at.
    members.update({name: b"garbage" for name in members if name != f"{META_KEY}.npy"})
    path = write_zip(tmp_path / "m.npz", members)
    message = one_line(path)
    assert needle in message, message
    assert needle in one_line(path, load_model)


def test_metadata_member_that_is_not_a_small_uint8_vector(tmp_path):
    arrays, meta = model_checkpoint()
    members = members_of(arrays, meta)
    members[f"{META_KEY}.npy"] = npy(np.zeros(3))
    assert "metadata has shape (3,) float64" in one_line(write_zip(tmp_path / "a.npz", members))
    members[f"{META_KEY}.npy"] = npy_header((10**9,), "|u1") + b"{}"
    assert "metadata has shape (1000000000,) uint8, expected (<=4194304,) uint8" in \
        one_line(write_zip(tmp_path / "b.npz", members))
    members[f"{META_KEY}.npy"] = meta_bytes([1, 2])  # JSON, but not an object
    assert "metadata must be a JSON object" in one_line(write_zip(tmp_path / "c.npz", members))
    members[f"{META_KEY}.npy"] = npy(np.frombuffer(b"[" * 100_000, dtype=np.uint8))
    assert "not valid JSON" in one_line(write_zip(tmp_path / "d.npz", members))


# ------------------------------------------------------------------------------- members
def _members_case(tmp_path, change) -> str:
    arrays, meta = model_checkpoint(num_layers=2, state_rows=4)
    members = members_of(arrays, meta)
    change(members, arrays)
    path = write_zip(tmp_path / "x.npz", members)
    message = one_line(path)
    assert message == one_line(path, load_model)  # generate and serving: the same check
    return message


MEMBER_CASES = {
    "unknown-param": (lambda m, a: m.update({"param/extra.npy": npy(np.zeros(2))}),
                      "unexpected ['param/extra']"),
    "unknown-prefix": (lambda m, a: m.update({"junk.npy": npy(np.zeros(2))}),
                       "unexpected ['junk']"),
    "not-npy": (lambda m, a: m.update({"readme.txt": b"hi"}), "'readme.txt' that is not an .npy"),
    "missing-param": (lambda m, a: m.pop("param/out.b.npy"), "missing ['param/out.b']"),
    "half-optimizer": (lambda m, a: m.pop("optim/m.out.b.npy"), "missing ['optim/m.out.b']"),
    "buffers-without-t": (lambda m, a: m.pop("optim/t.npy"), "missing ['optim/t']"),
    "half-state": (lambda m, a: m.pop("state/0/0.npy"), "missing ['state/0/0']"),
    "state-too-wide": (lambda m, a: m.update({"state/0/0.npy": npy(np.zeros((5, 4), "f4"))}),
                       "hidden state '0/0' has shape (5, 4) float32, expected (<=4, 4)"),
    "float-t": (lambda m, a: m.update({"optim/t.npy": npy(np.array(3.0))}),
                "optimizer state 't' has shape () float64, expected () int64"),
    "big-endian": (lambda m, a: m.update({"param/out.b.npy": npy(a["param/out.b"].astype(">f4"))}),
                   "parameter 'out.b' has shape (3,) float32 (>f4), expected (3,) float32"),
    "npy-version-3": (lambda m, a: m.update({"param/out.b.npy": b"\x93NUMPY\x03\x00" + b"x" * 60}),
                      "uses .npy format version 3.0"),
    "trailing-data": (lambda m, a: m.update({"param/out.b.npy": npy(a["param/out.b"]) + b"x"}),
                      "holds 13 data bytes but its header declares 12"),
    "short-data": (lambda m, a: m.update({"param/out.b.npy": npy(a["param/out.b"])[:-1]}),
                   "holds 11 data bytes but its header declares 12"),
}


@pytest.mark.parametrize("case", list(MEMBER_CASES))
def test_unknown_missing_and_malformed_members(tmp_path, case):
    change, needle = MEMBER_CASES[case]
    message = _members_case(tmp_path, change)
    assert needle in message, message


def test_a_member_stored_twice_is_refused(tmp_path):
    arrays, meta = model_checkpoint()
    path = tmp_path / "twice.npz"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name"
        for name, data in members_of(arrays, meta).items():
            zf.writestr(name, data)
        zf.writestr("param/out.b.npy", npy(np.ones(3, np.float32)))
    assert "holds member 'param/out.b.npy' twice" in one_line(path)


def test_object_array_in_any_group_is_refused(tmp_path):
    arrays, meta = model_checkpoint(state_rows=2)
    for name in ("param/out.b", "optim/v.out.b", "state/0/0"):
        members = members_of(arrays, meta)
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.array([None, print], dtype=object), allow_pickle=True)
        members[f"{name}.npy"] = buf.getvalue()
        message = one_line(write_zip(tmp_path / "o.npz", members))
        assert "is an object array; refused" in message and "never unpickled" in message


def test_state_rows_may_be_short_but_must_agree(tmp_path):
    arrays, meta = model_checkpoint(cell="lstm", state_rows=4)
    arrays["state/0/0"] = arrays["state/0/0"][:2].copy()
    arrays["state/0/1"] = arrays["state/0/1"][:2].copy()
    read_checkpoint(save_checkpoint(tmp_path / "short.npz", arrays, meta))  # a short last batch
    arrays["state/0/1"] = np.zeros((3, 4), np.float32)
    path = save_checkpoint(tmp_path / "disagree.npz", arrays, meta)
    assert "hidden state arrays disagree on the batch size ([2, 3])" in one_line(path)


def test_optimizer_state_of_an_unregistered_optimizer(tmp_path):
    arrays, meta = model_checkpoint(optimizer="adam")
    path = save_checkpoint(tmp_path / "c.npz", arrays, {**meta, "optimizer": "lion"})
    assert "its optimizer 'lion' is not a registered optimizer here" in one_line(path)
    arrays, meta = model_checkpoint(optimizer=None)
    read_checkpoint(save_checkpoint(tmp_path / "d.npz", arrays, {**meta, "optimizer": "lion"}))


def test_generation_does_not_read_optimizer_or_state_data(tmp_path):
    """load_model checks every member's name, size and header but reads only the parameters."""
    arrays, meta = model_checkpoint(hidden_size=64, state_rows=2)
    path = save_checkpoint(tmp_path / "c.npz", arrays, meta)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:  # 48 KB: its header is read, its end is not
        info = zf.getinfo("optim/m.layers.0.W_h.npy")
    # The last data byte of that member (its local header is 30 bytes + the name).
    data[info.header_offset + 30 + len(info.filename) + info.compress_size - 1] ^= 0xFF
    path.write_bytes(bytes(data))
    model, _, _ = load_model(path)
    assert np.array_equal(model.params["out.W"], arrays["param/out.W"])
    assert "truncated or corrupt" in one_line(path)  # read in full, it fails its CRC
