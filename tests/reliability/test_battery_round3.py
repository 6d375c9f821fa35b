"""Faults found by trying every command as a hostile user would, in the newer features: each is
one line on stderr with a truthful exit status, nothing printed on stdout and nothing trained."""

from __future__ import annotations

import errno
import os
import time
import warnings
from pathlib import Path

import pytest

from framework.errors import ConfigError, TrackingError
from tests.conftest import needs_data
from tests.helpers import run_cli, run_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tasks"
LM = FIXTURES / "lm_dinos_gru.npz"
NAMES = FIXTURES / "classify_names_bigru.npz"
VOWELS = FIXTURES / "classify_vowels_bigru.npz"
FORECASTER = FIXTURES / "forecast_sunspots_lstm_diff1.npz"
SEQ2SEQ = FIXTURES / "seq2seq_dates_bilstm_gru.npz"
QUICK = ["train.steps=1", "mlflow.enabled=false", "cell.hidden_size=4"]
TOO_LONG = "x" * 300  # longer than any file name the system takes (ENAMETOOLONG)


def one_line(result, code: int = 2) -> str:
    """The one ``rnnlab: error:`` line of a failed command (nothing on stdout)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), result.stderr
    assert "Traceback" not in result.stderr and not result.stdout.strip()
    return lines[0]


# ------------------------------------------------------------------ framework.generate / predict
@pytest.mark.parametrize("checkpoint", [VOWELS, FORECASTER, NAMES, SEQ2SEQ],
                         ids=["vowels", "forecaster", "names", "seq2seq"])
def test_generate_from_a_model_that_does_not_generate_is_one_line(checkpoint, tmp_path):
    # A classifier of vector sequences and a forecaster have no vocabulary: this used to be an
    # AttributeError traceback; a too-wide beam must not hide the real cause either.
    for extra in ([], ["decoder=beam", "decoder.width=1000"]):
        line = one_line(run_cli("framework.generate", [f"checkpoint={checkpoint}", *extra],
                                tmp_path))
        assert "which does not generate text; use python -m framework.predict" in line


@pytest.mark.parametrize("option, message", [
    ("seed=nan", "seed must be null or an integer in [0, 2**63 - 1], got nan"),
    ("seed=-1", "seed must be null or an integer in [0, 2**63 - 1], got -1"),
    ("seed=1.5", "seed must be null or an integer in [0, 2**63 - 1], got 1.5"),
    ("seed=abc", "seed must be null or an integer in [0, 2**63 - 1], got 'abc'"),
    ("score=maybe", "score must be true or false, got 'maybe'"),
    ("length=0", "length must be a positive integer, got 0"),
    ("length=1e308", "length must be a positive integer, got 1e+308"),
    ("length=100001", "length must be null or in [1, 100000], got 100001"),
    ("top_k=abc", "top_k must be a positive integer, got 'abc'"),
])
@pytest.mark.parametrize("checkpoint, given", [(SEQ2SEQ, "text=9 may 2018"),
                                               (FORECASTER, "history=null"),
                                               (NAMES, "text=Smith")],
                         ids=["seq2seq", "forecaster", "names"])
def test_predict_checks_its_shared_options_for_every_task(checkpoint, given, option, message,
                                                           tmp_path):
    # The seq2seq model's predict passed seed=nan/-1/1.5/abc to NumPy (a traceback) and printed
    # scores for score=maybe; the other tasks ignored what they do not read.
    line = one_line(run_cli("framework.predict", [f"checkpoint={checkpoint}", given, option],
                            tmp_path))
    assert line == f"rnnlab: error: {message}"


@pytest.mark.parametrize("checkpoint, args, message", [
    (FORECASTER, ["text=ab"], "this checkpoint is a forecaster, which reads history=, not text=; "
                              "drop text="),
    (VOWELS, ["text=ab", "sequence=x.txt"], "this checkpoint is a classifier, which reads "
                                            "sequence=, not text=; drop text="),
    (LM, ["text=ab", "sequence=x.txt"], "this checkpoint is a language model, which reads "
                                        "text=, not sequence=; drop sequence="),
    (LM, ["sequence=x.txt"], "this model reads texts: pass text=<a text> or text=[a,b,...]"),
    (NAMES, ["text=ab", "history=[1,2]"], "this checkpoint is a classifier, which reads text=, "
                                          "not history=; drop history="),
    (SEQ2SEQ, ["text=ab", "history=[1]"], "this checkpoint is a sequence to sequence model, "
                                          "which reads text=, not history=; drop history="),
    (LM, [], "this model reads texts: pass text=<a text> or text=[a,b,...]"),
], ids=["forecaster-text", "vowels-text", "lm-sequence", "lm-only-sequence", "names-history",
        "seq2seq-history", "lm-nothing"])
def test_predict_refuses_an_input_its_model_does_not_read(checkpoint, args, message, tmp_path):
    # A forecaster given text= forecast from the end of its training data as if it had not been
    # given; the language model asked for text "to classify".
    line = one_line(run_cli("framework.predict", [f"checkpoint={checkpoint}", *args], tmp_path))
    assert line == f"rnnlab: error: {message}"


def test_an_unreadable_checkpoint_is_one_line_for_every_command(tmp_path):
    # /proc/self/mem is a "regular file" of size 0 whose read fails with EIO: it used to reach
    # the output-folder handler and be reported as "cannot write <cwd>; set hydra.run.dir=".
    for module, args in (("framework.generate", ["checkpoint=/proc/self/mem"]),
                         ("framework.predict", ["checkpoint=/proc/self/mem", "text=ab"]),
                         ("framework", ["resume=/proc/self/mem", *QUICK,
                                        f"hydra.run.dir={tmp_path / 'run'}"])):
        line = one_line(run_cli(module, args, tmp_path))
        assert line == "rnnlab: error: cannot read checkpoint /proc/self/mem: Input/output error"


# ------------------------------------------------------------------------ training's paths
@pytest.fixture
def labelled(tmp_path) -> Path:
    path = tmp_path / "labels.tsv"
    path.write_text("".join(f"a good film {i}\tpos\nbad film {i}\tneg\n" for i in range(10)),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("dataset, extra", [
    ("textfile", []), ("labelled_textfile", ["task=classify"]),
    ("csv_series", ["task=forecast", "dataset.column=v"]),
    ("parallel_textfile", ["task=seq2seq"]), ("labelled_sequences", ["task=classify"]),
])
def test_a_dataset_path_the_system_refuses_is_one_line_naming_it(dataset, extra, tmp_path):
    # A name too long made Path.exists() raise; the error reached the output-folder handler:
    # "Error executing job ..." and "cannot write <path>; set hydra.run.dir=".
    path = tmp_path / TOO_LONG
    line = one_line(run_cli("framework", [f"dataset={dataset}", f"dataset.path={path}", *extra,
                                          *QUICK, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path))
    assert f"cannot read {path} (File name too long)" in line and "hydra.run.dir" not in line


@needs_data("JapaneseVowels/JapaneseVowels_TRAIN.ts")
def test_a_bad_test_path_names_dataset_test_path(tmp_path):
    from framework.data import locate
    from framework.registry import DATASETS

    train = next(s for s in DATASETS.get("japanese_vowels").sources if "TRAIN" in s.filename)
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for test_path, message in ((tmp_path / "nope.ts", "does not exist; fix dataset.test_path"),
                               (tmp_path / "loop1", "(Too many levels of symbolic links); fix "
                                                    "dataset.test_path")):
        line = one_line(run_cli("framework", [
            "task=classify", "dataset=labelled_sequences", f"dataset.path={locate(train)}",
            f"dataset.test_path={test_path}", *QUICK, f"hydra.run.dir={tmp_path / 'run'}"],
            tmp_path))
        assert line.endswith(message), line


def test_pretrained_vectors_that_are_not_a_regular_file_are_one_line(labelled, tmp_path):
    # A FIFO and /dev/zero were reported as "empty"; a name too long was a traceback turned
    # into "cannot write ...; set hydra.run.dir=".
    fifo = tmp_path / "vectors.fifo"
    os.mkfifo(fifo)
    base = ["task=classify", "dataset=labelled_textfile", f"dataset.path={labelled}",
            "tokenizer=words", "model.embedding.size=4", "train.batch_size=2", *QUICK,
            f"hydra.run.dir={tmp_path / 'run'}"]
    for source, message in ((fifo, f"{fifo} is a named pipe (FIFO), not a regular file"),
                            ("/dev/zero", "/dev/zero is a character device, not a regular file"),
                            (tmp_path, f"{tmp_path} is a directory, not a regular file"),
                            (tmp_path / TOO_LONG, "(File name too long)")):
        line = one_line(run_cli("framework", [*base, f"model.embedding.pretrained={source}"],
                                tmp_path))
        assert message in line and "hydra.run.dir" not in line, line


def test_an_output_folder_no_one_can_create_is_one_line(tmp_path):
    # /proc refuses new folders with ENOENT: it was a FileNotFoundError traceback from Hydra.
    line = one_line(run_cli("framework", ["hydra.run.dir=/proc/rnnlab-test", *QUICK], tmp_path))
    assert line == ("rnnlab: error: cannot write /proc/rnnlab-test: No such file or directory "
                    "[ENOENT]; set hydra.run.dir= to a writable folder with free space, or run "
                    "from one")


def test_a_file_error_inside_a_job_names_the_file_not_the_output_folder(monkeypatch, tmp_path):
    import framework.training.checkpoint as checkpoint

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "/mnt/gone/latest.npz")

    monkeypatch.setattr(checkpoint, "resolve_checkpoint", broken)
    line = one_line(run_cli("framework", ["resume=/mnt/gone/latest.npz", *QUICK,
                                          f"hydra.run.dir={tmp_path / 'run'}"], tmp_path))
    assert line.startswith("rnnlab: error: cannot use /mnt/gone/latest.npz: Input/output error "
                           "[EIO]; ")


# ------------------------------------------------------------------------ settings and stores
@pytest.mark.parametrize("uri, message", [
    ("sqlite://", "is an in-memory database, lost when the command ends"),
    ("sqlite:///", "is an in-memory database"),
    ("sqlite:///:memory:", "is an in-memory database"),
    ("http://", "names no server"),
    ("'http://[::1'", "is not a valid URI (Invalid IPv6 URL)"),
    ("http://127.0.0.1:99999", "is not a valid URI (Port out of range 0-65535)"),
    ("http://127.0.0.1:0", "has port 0"),
])
def test_tracking_uris_that_cannot_work_are_refused_by_the_schema(uri, message):
    # An in-memory store trained and exited 0 with the run lost; "http://[::1" was a ValueError
    # traceback from the reachability probe.
    with pytest.raises(ConfigError, match="mlflow.tracking_uri") as info:
        run_config([f"mlflow.tracking_uri={uri}"])
    assert message in str(info.value)


def test_a_sqlite_store_path_that_cannot_be_a_database_is_one_line_at_once(tmp_path):
    # A folder, a FIFO or a name too long made MLflow retry for about 90 s, printing SQLAlchemy
    # warnings; a symlink loop was a RuntimeError traceback.
    from framework.tracking.tracker import make_client

    fifo = tmp_path / "store.fifo"
    os.mkfifo(fifo)
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    (tmp_path / "a-file").write_text("x")
    cases = ((tmp_path, "is a folder, not a database file"),
             (fifo, "is a named pipe (FIFO), not a database file"),
             (tmp_path / "loop1", "cannot be used (Too many levels of symbolic links)"),
             (tmp_path / TOO_LONG, "cannot be used (File name too long)"),
             (tmp_path / "a-file" / "m.db", "is a file, not a folder"))
    for path, message in cases:
        started = time.monotonic()
        with pytest.raises(TrackingError) as info:
            make_client(f"sqlite:///{path}")
        assert message in str(info.value) and "mlflow.tracking_uri" in str(info.value)
        assert time.monotonic() - started < 5


def test_more_dates_than_exist_are_refused_before_drawing():
    # 1,000,000 + 1,000,000 passed the schema and then drew Faker dates for many minutes: the
    # distinct human dates run out near 178,000.
    pytest.importorskip("faker")
    with pytest.raises(ConfigError, match=r"n_train \+ n_val must be at most 100,000"):
        run_config(["task=seq2seq", "dataset=dates", "dataset.n_train=90000",
                    "dataset.n_val=20000"])
    with pytest.raises(ConfigError, match=r"must be in \[1, 100,000\], got 1000000"):
        run_config(["task=seq2seq", "dataset=dates", "dataset.n_train=1000000"])


# ------------------------------------------------------------------ real-valued sequences
def test_sequence_values_beyond_what_a_model_can_scale_are_one_line(tmp_path):
    # 1e308 frames printed two NumPy RuntimeWarnings and then "inputs contain NaN or Inf" (they
    # are finite); 1e100 frames overflowed the float32 cast after standardising, the same way.
    import numpy as np
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from framework.tracking.pyfunc import load_text_model

    huge, big = tmp_path / "huge.txt", tmp_path / "big.txt"
    np.savetxt(huge, np.full((5, 12), 1e308))
    np.savetxt(big, np.full((5, 12), 1e100))
    line = one_line(run_cli("framework.predict", [f"checkpoint={VOWELS}", f"sequence={huge}"],
                            tmp_path))
    assert line == (f"rnnlab: error: {huge} has a value as large as 1e+308, beyond the 1e+150 a "
                    f"sequence model can standardise in float64; rescale the features (divide "
                    f"them by a power of ten)")
    line = one_line(run_cli("framework.predict", [f"checkpoint={VOWELS}", f"sequence={big}"],
                            tmp_path))
    assert "standard deviations from the training data's mean, more than a float32 model" in line
    served = load_text_model(VOWELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning would fail here
        with pytest.raises(MlflowException, match="beyond the 1e[+]150") as info:
            served.predict(None, pd.DataFrame({"sequence": [[[-1e308] * 12]]}))
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_training_sequences_beyond_what_a_model_can_scale_are_one_line(tmp_path):
    path = tmp_path / "seqs.csv"
    rows = [f"{i},{'xy'[i % 2]},{1e200 if i == 3 else t},{t}" for i in range(20) for t in range(3)]
    path.write_text("sequence,label,a,b\n" + "\n".join(rows) + "\n", encoding="utf-8")
    line = one_line(run_cli("framework", ["task=classify", "dataset=labelled_sequences",
                                          f"dataset.path={path}", "train.batch_size=2", *QUICK,
                                          f"hydra.run.dir={tmp_path / 'run'}"], tmp_path))
    assert "has a value as large as 1e+200, beyond the 1e+150" in line



# ------------------------------------------------------------------ files a command writes
def test_compare_output_that_cannot_be_written_is_one_line_before_the_store_is_read(tmp_path):
    # --output naming a FIFO blocked forever (open() waited for a reader); a folder or a path
    # under a file was found only after the store had been read.
    fifo = tmp_path / "table.fifo"
    os.mkfifo(fifo)
    (tmp_path / "a-file").write_text("x")
    store = "--tracking-uri=sqlite:///" + str(tmp_path / "nowhere.db")  # never opened
    for output, message in ((tmp_path, "it is a folder; name a file in it"),
                            (tmp_path / "a-file" / "t.csv", "a-file is a file, not a folder")):
        started = time.monotonic()
        result = run_cli("framework.compare", ["rnnlab", store, "--output", str(output)],
                         tmp_path)
        assert message in one_line(result) and time.monotonic() - started < 5
    from framework.cli import compare
    from framework.errors import StorageError

    with pytest.raises(StorageError, match=r"it is a named pipe \(FIFO\) that no process reads"):
        compare._write_output(fifo, "table\n")  # at once: the open does not wait for a reader


def test_compare_writes_into_a_pipe_that_has_a_reader(tmp_path, monkeypatch):
    from framework.cli import compare

    read_end, write_end = os.pipe()
    try:
        compare._write_output(Path(f"/proc/self/fd/{write_end}"), "table\n")
        assert os.read(read_end, 100) == b"table\n"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_music_output_onto_a_fifo_is_refused_before_writing(tmp_path):
    from framework.music.generated import output_paths

    os.mkfifo(tmp_path / "piece_2.mid")
    with pytest.raises(ConfigError, match=r"piece_2.mid is a named pipe \(FIFO\), not a regular"):
        output_paths(tmp_path / "piece.mid", 2)
    assert output_paths(tmp_path / "piece.mid", 1) == [tmp_path / "piece.mid"]


def test_a_tracking_uri_that_is_not_a_uri_is_one_line_for_every_command():
    from framework.tracking.tracker import make_client

    with pytest.raises(TrackingError, match=r"is not a valid URI \(Invalid IPv6 URL\)"):
        make_client("http://[::1")


# ------------------------------------------------------------------ options a task never reads
@pytest.mark.parametrize("overrides, message", [
    (["task=forecast", "dataset=sunspots", "tokenizer=words"],
     "tokenizer=words does not apply to task 'forecast' on 'sunspots' (series)"),
    (["task=seq2seq", "dataset=dates", "dataset.n_train=20", "dataset.n_val=5",
      "tokenizer=chars"], "tokenizer=chars does not apply to task 'seq2seq' on 'dates'"),
    (["task=forecast", "dataset=sunspots", "train.feed=stream"],
     "train.feed=stream does not apply to task 'forecast', which batches its data its own way"),
    (["task=classify", "dataset=names", "train.feed=windows"],
     "train.feed=windows does not apply to task 'classify'"),
], ids=["forecast-tokenizer", "seq2seq-tokenizer", "forecast-feed", "classify-feed"])
def test_a_tokenizer_or_feed_the_task_never_reads_is_refused(overrides, message, tmp_path):
    # These trained and exited 0 with the option silently ignored.
    from tests.conftest import require_run_data

    if "dataset=dates" in overrides:
        pytest.importorskip("faker")
    require_run_data(overrides)
    line = one_line(run_cli("framework", [*overrides, *QUICK, "train.batch_size=2",
                                          f"hydra.run.dir={tmp_path / 'run'}"], tmp_path))
    assert message in line and ("drop the tokenizer option" in line or "drop train.feed" in line)


def test_a_vector_value_beyond_float32_is_named_not_called_nan(tmp_path):
    # "1e39" parsed straight into float32 printed a NumPy overflow warning and was then reported
    # as "contains NaN or infinite values".
    from framework.data.vectors import load_vectors
    from framework.errors import DataError

    path = tmp_path / "vectors.txt"
    path.write_text("film 0.5 0.25\ngood 1e39 2\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"line 2: the vector of 'good' has a value as large "
                                            r"as 1e\+39, beyond float32's 3.4e\+38"):
            load_vectors(str(path), ["film", "good"], dim=2)
        assert load_vectors(str(path), ["film"], dim=2).n_found == 1


def test_a_tokenizer_without_an_unknown_token_says_why_validation_cannot_be_encoded(tmp_path):
    # It failed with "text contains 1 token(s) not in the vocabulary: ...; use only the model's
    # N tokens", as if the user had typed the text.
    path = tmp_path / "labels.tsv"
    path.write_text("".join(f"word{i} film\t{'ab'[i % 2]}\n" for i in range(20)),
                    encoding="utf-8")
    line = one_line(run_cli("framework", [
        "task=classify", "dataset=labelled_textfile", f"dataset.path={path}",
        "dataset.val_fraction=0.5", "tokenizer=tokens", "train.batch_size=2", *QUICK,
        f"hydra.run.dir={tmp_path / 'run'}"], tmp_path))
    assert ("'labelled_textfile': its validation split has tokens the training split lacks, and "
            "tokenizer=tokens has no unknown token (") in line
    assert line.endswith("use tokenizer=words, which maps them to its unknown token")


def test_a_served_number_cell_given_true_is_a_400_not_the_number_one():
    # width=true was taken as a beam of width 1 (float(True) == 1.0).
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from framework.tracking.pyfunc import load_text_model

    served = load_text_model(SEQ2SEQ)
    with pytest.raises(MlflowException, match="expected a number, got True") as info:
        served.predict(None, pd.DataFrame({"text": ["9 may 2018"], "decoder": ["beam"],
                                           "width": [True]}))
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("history", [[True, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, False]])
def test_a_history_with_true_or_false_is_not_read_as_numbers(history):
    """Served JSON true (or history=[true,...] on the command line) is refused, not read as 1."""
    import numpy as np

    from framework.errors import ConfigError
    from framework.tasks.forecast import check_history

    with pytest.raises(ConfigError, match="true and false are not numbers"):
        check_history(history, window=3)
    with pytest.raises(ConfigError, match="true and false are not numbers"):
        check_history(np.array(history, dtype=object), window=3)
    assert check_history([0.5, 1.0, 2.0, 3.0], window=3).shape == (3, 1)
