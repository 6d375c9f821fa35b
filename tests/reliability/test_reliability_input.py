"""Bad input never gives a traceback: one line on stderr, a non-zero exit, nothing trained.

Most cases call the real entry points (``framework.cli.train.main``, ``framework.generate.main``)
in-process with a patched ``sys.argv``: the same code path as ``python -m framework`` at a fraction
of the start-up cost.  A few cases run real subprocesses to pin down what a shell user sees
(exit status, stderr, debug tracebacks).  tests/cli/test_app.py already covers unknown plugin names
(with did-you-mean) and the basic out-of-range values; this file adds the rest.
"""

from __future__ import annotations

import json
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from framework.data.vocab import Vocab
from framework.training.checkpoint import META_KEY, load_checkpoint, save_checkpoint
from framework.training.trainer import Reporter, Trainer
from tests.conftest import needs_data
from tests.helpers import QUICK, cli, run_cli, run_config

OFF = "mlflow.enabled=false"


class _NoTracker:
    def log_metrics(self, values: dict, step: int) -> None:
        pass


def call_main(module: str, args: list[str]) -> tuple[int, list[str]]:
    """Run ``python -m <module> <args>`` in-process; returns (exit status, stderr lines)."""
    proc = run_cli(module, args)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()]


def assert_one_line_error(code: int, lines: list[str], *needles: str) -> None:
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith("rnnlab: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def no_checkpoints(root: Path) -> bool:
    return not list(root.rglob("*.npz"))


# --------------------------------------------------------------------------- config values
@pytest.mark.parametrize("args, needles", [
    (["train.stepz=5"], ["unknown config key 'train.stepz'", "did you mean 'train.steps'?"]),
    (["cell.hidden_sizee=3"], ["cell 'lstm' has no option 'hidden_sizee'",
                               "did you mean 'cell.hidden_size'?"]),
    (["cell=rnn", "cell.forget_bias=1"], ["cell 'rnn' has no option 'forget_bias' (its options: "
                                          "hidden_size, init, backend); forget_bias is an option "
                                          "of lstm"]),
    (["trian.steps=3"], ["unknown config key 'trian'", "did you mean 'train'?"]),
    (["+train.stepz=5"], ["unknown config key 'train.stepz'; did you mean 'train.steps'?"]),
    (["+foo=bar"], ["unknown config key 'foo' (--cfg job lists the keys)"]),
    (["+sed=1"], ["unknown config key 'sed'; did you mean 'seed'?"]),
    (["foo"], ["Error parsing override 'foo'"]),
    (["train.steps=abc"], ["train.steps", "could not be converted to Integer"]),
    (["optimizer.lr=0"], ["lr must be a finite number > 0"]),
    (["optimizer=sgd", "optimizer.lr=-0.5"], ["lr must be a finite number > 0"]),
    (["model.dropout=-0.1"], ["model.dropout must be in [0, 1)"]),
    (["model.dropout=1.5"], ["model.dropout must be in [0, 1)"]),
    (["cell.hidden_size=-3"], ["hidden_size must be > 0"]),
    (["train.seq_len=-1"], ["train.seq_len must be >= 1"]),
    (["train.batch_size=-2"], ["train.batch_size must be >= 1"]),
    (["train.steps=-5"], ["train.steps must be >= 0"]),
    (["seed=-1"], ["seed must be a non-negative integer"]),
    (["dtype=float16"], ["dtype must be float32 or float64"]),
    (["sampler.temperature=0"], ["temperature"]),
    (["clip.max_norm=-1"], ["max_norm"]),
    (["-m", "sampler=greedy,topk"], ["unknown sampler 'topk'", "did you mean 'top_k'?"]),
    (["-m", "optimizer=choice(adam,adamw)"], ["unknown optimizer 'adamw'"]),
])
def test_bad_config_value_is_one_line(in_tmp, capsys, args, needles):
    code, lines = call_main("framework", [*args, OFF])
    assert_one_line_error(code, lines, *needles)
    assert code == 2
    assert no_checkpoints(in_tmp)


@pytest.mark.parametrize("args, needles", [
    (["dataset=dinos", "train.batch_size=5000"],
     ["train.batch_size=5000 is larger than the", "training examples"]),
    (["dataset=tinyshakespeare", "train.batch_size=100000"], ["lower train.batch_size"]),
    (["dataset=tinyshakespeare", "train.seq_len=5000000"], ["train.seq_len"]),
    (["dataset=dinos", "train.feed=example", "train.batch_size=3"], ["train.batch_size=1"]),
])
@needs_data("dinos.txt", "tinyshakespeare.txt")
def test_batch_larger_than_the_data_is_refused(in_tmp, capsys, args, needles):
    code, lines = call_main("framework", [*args, OFF, "cell.hidden_size=8"])
    assert_one_line_error(code, lines, *needles)
    assert no_checkpoints(in_tmp)


# --------------------------------------------------------------------------- dataset files
def _file(name: str, data: bytes):
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return make


def _directory(d: Path) -> Path:
    (d / "adir").mkdir()
    return d / "adir"


@pytest.mark.parametrize("make, needles", [
    (lambda d: d / "missing.txt", ["does not exist; fix dataset.path"]),
    (_directory, ["is a directory"]),
    (_file("e.txt", b""), ["is empty"]),
    (_file("l.txt", b"caf\xe9 au lait"), ["is not UTF-8 text", "re-save it as UTF-8"]),
    (_file("b.bin", bytes(range(256)) * 4), ["looks binary"]),
    (_file("one.txt", b"x"), ["too little text", "one distinct character"]),
    (_file("same.txt", b"zzzzzzzz"), ["one distinct character"]),
], ids=["missing", "directory", "empty", "latin1", "binary", "single-char", "one-symbol"])
def test_bad_dataset_file_is_one_line(in_tmp, capsys, make, needles):
    path = make(in_tmp)
    code, lines = call_main("framework", ["dataset=textfile", f"dataset.path={path}", OFF])
    assert_one_line_error(code, lines, *needles)
    assert no_checkpoints(in_tmp)


def test_textfile_without_path_is_one_line(in_tmp, capsys):
    code, lines = call_main("framework", ["dataset=textfile", OFF])
    assert_one_line_error(code, lines, "set dataset.path")


# --------------------------------------------------------------------------- tracking URIs
@pytest.mark.parametrize("uri, needles", [
    ("bogus://x", ["unsupported scheme 'bogus'"]),
    ("./mlruns", ["file store"]),
    ("http://127.0.0.1:9", ["not reachable", "mlflow.enabled=false"]),
])
@needs_data("dinos.txt")
def test_bad_tracking_uri_fails_fast_before_training(in_tmp, capsys, uri, needles):
    t0 = time.monotonic()
    code, lines = call_main("framework", [f"mlflow.tracking_uri={uri}", "cell.hidden_size=8",
                                          "train.steps=3"])
    assert time.monotonic() - t0 < 10, "an unusable tracking store must fail within seconds"
    assert_one_line_error(code, lines, *needles)
    assert no_checkpoints(in_tmp)  # refused before the first training step


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real (tiny) training checkpoint on a private text file, and its config."""
    root = tmp_path_factory.mktemp("trained")
    text = root / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    overrides = [*QUICK, "cell=gru", "dataset=textfile", f"dataset.path={text}",
                 "train.steps=4", "train.seq_len=8", "train.checkpoint_every=2"]
    trainer = Trainer(run_config(overrides), out_dir=root / "run",
                      reporter=Reporter(_NoTracker(), lambda _: None))
    trainer.run()
    return trainer.last_checkpoint, overrides, text


def _tampered(src: Path, dst: Path, *, meta_update=None, drop=None, extra=None) -> Path:
    arrays, meta = load_checkpoint(src)
    meta.update(meta_update or {})
    for key in drop or ():
        arrays.pop(key)
    arrays.update(extra or {})
    return save_checkpoint(dst, arrays, meta)


def _object_array_checkpoint(src: Path, dst: Path) -> Path:
    """Copy of ``src`` with one parameter replaced by a pickled object array."""
    arrays, meta = load_checkpoint(src)
    arrays["param/out.b"] = np.array([{"evil": 1}, None], dtype=object)
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(dst, allow_pickle=True, **{META_KEY: blob}, **arrays)
    return dst


@pytest.fixture
def bad_checkpoints(trained, tmp_path):
    good, _, _ = trained
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("not a checkpoint")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    _object_array_checkpoint(good, tmp_path / "evil.npz")
    return tmp_path


@pytest.fixture
def no_pickle(monkeypatch):
    """Fail the test if anything unpickles while it runs."""
    def boom(*a, **k):
        raise AssertionError("pickle must never be used on a checkpoint")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)


CKPT_CASES = [
    ("missing.npz", ["not found"]),
    ("trunc.npz", ["truncated or corrupt"]),
    ("text.npz", ["not an .npz checkpoint"]),
    ("plain.npz", ["not an rnnlab checkpoint"]),
    ("evil.npz", ["object array", "never unpickled"]),
]


@pytest.mark.parametrize("name, needles", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_bad_resume_checkpoint_is_one_line(trained, bad_checkpoints, in_tmp, capsys, no_pickle,
                                           name, needles):
    _, overrides, _ = trained
    path = bad_checkpoints / name
    if name == "missing.npz":  # resume= also takes run ids, and says so
        needles = ["is neither a checkpoint file nor an MLflow run id"]
    code, lines = call_main("framework", [*overrides, "train.steps=6", f"resume={path}"])
    assert_one_line_error(code, lines, *needles)


@pytest.mark.parametrize("name, needles", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_bad_generate_checkpoint_is_one_line(bad_checkpoints, in_tmp, capsys, no_pickle, name,
                                             needles):
    path = bad_checkpoints / name
    code, lines = call_main("framework.generate", [f"checkpoint={path}", "length=5"])
    assert_one_line_error(code, lines, *needles)


def test_resume_from_another_cell_or_config_is_refused(trained, in_tmp, capsys):
    good, overrides, _ = trained
    for extra, needle in ((["cell=lstm"], "cell.name='gru' in the checkpoint, 'lstm' now"),
                          (["cell.hidden_size=12"], "cell.hidden_size=8 in the checkpoint, 12"),
                          (["train.batch_size=5"], "train.batch_size=4 in the checkpoint, 5 now"),
                          (["optimizer=sgd"], "optimizer.name='adam' in the checkpoint"),
                          (["seed=7"], "seed=0 in the checkpoint, 7 now")):
        code, lines = call_main("framework", [*overrides, *extra, f"resume={good}"])
        assert_one_line_error(code, lines, "resume: the config conflicts", needle,
                              "drop those overrides or start a new run")


def test_resume_on_a_changed_vocabulary_is_refused(trained, in_tmp, capsys):
    good, overrides, text = trained
    other = in_tmp / "corpus.txt"
    other.write_text(text.read_text().upper())  # same config, another alphabet
    moved = [o if not o.startswith("dataset.path=") else f"dataset.path={other}"
             for o in overrides]
    # dataset.path is part of the must-match dataset section: both messages are fine, but the
    # run must be refused before training either way.
    code, lines = call_main("framework", [*moved, f"resume={good}"])
    assert_one_line_error(code, lines, "resume:")
    text_backup = text.read_text()
    try:
        text.write_text(text_backup.upper())
        code, lines = call_main("framework", [*overrides, f"resume={good}"])
        assert_one_line_error(code, lines, "vocabulary differs from the checkpoint's")
    finally:
        text.write_text(text_backup)


def test_generate_checkpoint_from_another_model_is_refused(trained, in_tmp, capsys):
    good, _, _ = trained
    cases = {
        "cell.npz": ({"cell": "lstm"}, "do not match"),  # gru weights under an lstm label
        "hidden.npz": ({"model": {**load_checkpoint(good)[1]["model"], "hidden_size": 5}},
                       "shape"),
        "vocab.npz": ({"vocab": Vocab(tuple("abc")).to_json()}, ""),
    }
    for name, (update, needle) in cases.items():
        path = _tampered(good, in_tmp / name, meta_update=update)
        code, lines = call_main("framework.generate", [f"checkpoint={path}", "length=5"])
        assert_one_line_error(code, lines, "checkpoint", needle)
    path = _tampered(good, in_tmp / "missing-param.npz", drop=["param/out.W"])
    code, lines = call_main("framework.generate", [f"checkpoint={path}"])
    assert_one_line_error(code, lines, "do not match the model")


def _rewritten(src: Path, dst: Path, *, meta_change=None, members=None) -> Path:
    """Copy of checkpoint ``src`` with its metadata JSON changed by ``meta_change(meta)`` and
    members replaced or added from ``members`` (name -> raw bytes), written zip member by member
    (so nothing is validated on the way)."""
    with zipfile.ZipFile(src) as zf:
        raw = {name: zf.read(name) for name in zf.namelist()}
    if meta_change is not None:
        meta = json.loads(np.lib.format.read_array(
            __import__("io").BytesIO(raw[f"{META_KEY}.npy"]), allow_pickle=False).tobytes())
        meta_change(meta)
        buf = __import__("io").BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                  allow_pickle=False)
        raw[f"{META_KEY}.npy"] = buf.getvalue()
    raw.update(members or {})
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in raw.items():
            zf.writestr(name, data)
    return dst


def _terabyte_header(good: Path) -> bytes:
    """param/out.b's member with a header declaring a 4 TB array over its real bytes."""
    import io

    with zipfile.ZipFile(good) as zf:
        data = zf.read("param/out.b.npy")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    old = io.BytesIO(data)
    np.lib.format.read_magic(old)
    np.lib.format.read_array_header_1_0(old)
    return buf.getvalue() + old.read()


HOSTILE = {
    "float-step": (dict(meta_change=lambda m: m.update(step=4.0)),
                   "metadata field 'step' must be an integer in [0,"),
    "string-step": (dict(meta_change=lambda m: m.update(step="4")),
                    "metadata field 'step' must be an integer"),
    "no-step": (dict(meta_change=lambda m: m.pop("step")), "metadata lacks step"),
    "string-smooth-loss": (dict(meta_change=lambda m: m.update(smooth_loss="low")),
                           "'smooth_loss' must be a finite number or null"),
    "bool-best-val": (dict(meta_change=lambda m: m.update(best_val_loss=True)),
                      "'best_val_loss' must be a finite number or null"),
    "huge-hidden": (dict(meta_change=lambda m: m["model"].update(hidden_size=10**9)),
                    "'model.hidden_size' must be an integer in [1, 1048576], got 1000000000"),
    "million-layers": (dict(meta_change=lambda m: m["model"].update(num_layers=10**6)),
                       "'model.num_layers' must be an integer in [1, 1024], got 1000000"),
    "huge-model": (dict(meta_change=lambda m: m["model"].update(hidden_size=200_000)),
                   "more than the"),
    "unknown-member": (dict(members={"param/extra.npy": b"x"}), "unexpected ['param/extra']"),
    "stray-file": (dict(members={"notes.txt": b"x"}), "'notes.txt' that is not an .npy array"),
    "terabyte-header": (dict(members="terabyte"), "parameter 'out.b' has shape (1000000, "
                                                  "1000000) float32, expected (28,) float32"),
}


@pytest.mark.parametrize("entry", ["resume", "generate"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_checkpoint_is_one_line_for_resume_and_generate(trained, in_tmp, capsys,
                                                               no_pickle, case, entry):
    good, overrides, _ = trained
    change, needle = HOSTILE[case]
    if change.get("members") == "terabyte":
        change = {"members": {"param/out.b.npy": _terabyte_header(good)}}
    path = _rewritten(good, in_tmp / f"{case}.npz", **change)
    if entry == "resume":
        code, lines = call_main("framework", [*overrides, "train.steps=6", f"resume={path}"])
    else:
        code, lines = call_main("framework.generate", [f"checkpoint={path}", "length=5"])
    assert_one_line_error(code, lines, needle)
    assert not list(in_tmp.rglob("step_*.npz"))  # nothing trained


def test_resume_needs_a_training_checkpoint(trained, in_tmp, capsys):
    good, overrides, _ = trained
    path = _rewritten(good, in_tmp / "no-loss.npz", meta_change=lambda m: m.pop("smooth_loss"))
    code, lines = call_main("framework", [*overrides, "train.steps=6", f"resume={path}"])
    assert_one_line_error(code, lines, "no smooth_loss; resume needs a checkpoint written by a "
                                       "training run")
    code, lines = call_main("framework.generate", [f"checkpoint={path}", "length=5"])
    assert code == 0 and lines == []  # generation does not need it
    with zipfile.ZipFile(good) as zf:
        state = [n for n in zf.namelist() if n.startswith("state/")]
    stateless = in_tmp / "stateless.npz"
    with zipfile.ZipFile(good) as zf, zipfile.ZipFile(stateless, "w") as out:
        for name in zf.namelist():
            if name not in state:
                out.writestr(name, zf.read(name))
    code, lines = call_main("framework", [*overrides, "train.steps=6", f"resume={stateless}"])
    assert_one_line_error(code, lines, "holds no hidden state")


def test_resume_of_a_finished_run_says_there_is_nothing_to_train(trained, in_tmp, capsys):
    good, overrides, _ = trained  # trained for train.steps=4; latest.npz is at step 4
    code, lines = call_main("framework", [*overrides, f"resume={good}"])
    assert_one_line_error(code, lines, f"checkpoint {good} is at step 4 = train.steps; nothing to "
                                       f"train: raise train.steps to continue")
    code, lines = call_main("framework", [*overrides, "train.steps=3", f"resume={good}"])
    assert_one_line_error(code, lines, "is at step 4 > train.steps=3; nothing to train")
    assert not list(in_tmp.rglob("*.npz"))
    code, lines = call_main("framework", [*overrides, "train.steps=6", f"resume={good.parent}"])
    assert code == 0 and lines == []
    (latest,) = in_tmp.rglob("latest.npz")
    assert load_checkpoint(latest)[1]["step"] == 6


def test_generate_prompt_outside_vocabulary(trained, in_tmp, capsys):
    good, _, _ = trained
    code, lines = call_main("framework.generate",
                            [f"checkpoint={good}", "prompt=QZ", "length=5"])
    assert_one_line_error(code, lines, "not in the vocabulary", "'Q'", "'Z'",
                          "lower-case the prompt")
    code, lines = call_main("framework.generate",
                            [f"checkpoint={good}", "prompt=the", "length=5", "seed=1"])
    assert code == 0 and lines == []


def test_generate_unknown_key_and_sampler(trained, in_tmp, capsys):
    good, _, _ = trained
    code, lines = call_main("framework.generate", [f"checkpoint={good}", "lenght=5"])
    assert_one_line_error(code, lines, "unknown config key 'lenght'", "did you mean 'length'?")
    code, lines = call_main("framework.generate", [f"checkpoint={good}", "sampler=topp"])
    assert_one_line_error(code, lines, "unknown sampler 'topp'", "did you mean 'top_p'?")


def test_checkpoint_files_are_zips_of_plain_npy(trained):
    """What the refusals above protect: rnnlab's own checkpoints hold no pickled member."""
    good, _, _ = trained
    with zipfile.ZipFile(good) as zf:
        for member in zf.namelist():
            header = zf.open(member).read(128)
            assert b"'descr': '|O'" not in header and b"'descr': 'O'" not in header, member


# --------------------------------------------------------------------------- real processes
def test_real_process_unknown_key_is_one_line_exit_2(tmp_path):
    proc = cli("framework", ["train.stepz=5", OFF], tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rnnlab: error: unknown config key 'train.stepz'; did you mean 'train.steps'? "
        "(--cfg job lists the keys)"]


@needs_data("dinos.txt")
def test_real_process_unreachable_tracking_server_fails_within_seconds(tmp_path):
    t0 = time.monotonic()
    proc = cli("framework", ["mlflow.tracking_uri=http://127.0.0.1:9", "train.steps=5",
                             "cell.hidden_size=8"], tmp_path, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not reachable" in lines[0], proc.stderr
    assert elapsed < 20, f"took {elapsed:.1f} s (includes interpreter start-up)"
    assert no_checkpoints(tmp_path)


@pytest.mark.parametrize("env, args, needle", [
    ({"RNNLAB_DEBUG": "1"}, ["cell.hidden_size=0"], "hidden_size must be > 0"),
    ({"HYDRA_FULL_ERROR": "1"}, ["train.stepz=1"], "stepz"),
], ids=["RNNLAB_DEBUG", "HYDRA_FULL_ERROR"])
def test_debug_mode_shows_the_traceback(tmp_path, env, args, needle):
    proc = cli("framework", [*args, OFF], tmp_path, timeout=120, env=env)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert needle in proc.stderr
