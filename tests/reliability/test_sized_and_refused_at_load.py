"""Memory sized before it is spent outside training (baselines, predictions, served requests),
served requests too large to answer refused with a 400, and class labels that cannot be printed on
one line refused when a checkpoint loads."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework import memory
from framework.errors import CheckpointError, ConfigError, RnnlabError
from framework.tasks import baselines

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tasks"
CLASSIFIER = FIXTURES / "classify_names_bigru.npz"
FORECASTER = FIXTURES / "forecast_sunspots_lstm_diff1.npz"
TINY = (1 << 20, "a test's 1 MiB")


# ----------------------------------------------------------------------------- memory checks
def test_check_buffers_is_one_line_naming_the_need_and_the_fix(monkeypatch):
    monkeypatch.delenv(memory.SKIP_ENV, raising=False)
    with pytest.raises(ConfigError) as info:
        memory.check_buffers("classifying 3 texts", 5 * 2**30, "3 texts padded to 9 steps",
                             "pass fewer or shorter texts", available=TINY)
    assert str(info.value) == (
        "classifying 3 texts needs about 5.0 GiB of memory (3 texts padded to 9 steps) but 1 MiB "
        "is available (a test's 1 MiB); pass fewer or shorter texts (or set "
        "RNNLAB_SKIP_MEMORY_CHECK=1 to try anyway)")
    memory.check_buffers("x", 1000, "small", "-", available=TINY)  # fits: nothing happens
    monkeypatch.setenv(memory.SKIP_ENV, "1")
    memory.check_buffers("x", 5 * 2**30, "big", "-", available=TINY)  # turned off


def test_a_naive_bayes_baseline_that_does_not_fit_is_skipped_with_one_warning(monkeypatch,
                                                                               capsys):
    from framework.data.corpora.labelled import labelled_corpus

    texts = [f"text number {i}" for i in range(40)]
    labels = [f"c{i % 20}" for i in range(40)]
    corpus = labelled_corpus("many", texts, labels, val_fraction=0.5)
    full = baselines.classify_baselines(corpus)
    assert set(full) == {"baseline_majority_accuracy", "baseline_nb_accuracy",
                         "baseline_nb_macro_f1"}
    monkeypatch.setattr(memory, "available_memory", lambda: (1000, "a test's 1000 bytes"))
    allocated: list[tuple] = []
    real_zeros = np.zeros
    monkeypatch.setattr(baselines.np, "zeros",
                        lambda *a, **k: allocated.append(a) or real_zeros(*a, **k))
    skipped = baselines.classify_baselines(corpus)
    assert skipped == {"baseline_majority_accuracy": full["baseline_majority_accuracy"]}
    assert not allocated  # refused before the (classes, grams) counts exist
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("rnnlab: warning: the naive Bayes baseline needs about ")
    assert "(20 classes x " in line and " distinct grams, float64) but " in line
    assert "; it is skipped (or set RNNLAB_SKIP_MEMORY_CHECK=1 to try anyway)" in line


def test_classifying_texts_that_do_not_fit_is_refused_before_padding(monkeypatch):
    from framework.tasks import classify
    from framework.training.checkpoint import load_model

    model, vocab, meta = load_model(CLASSIFIER)
    texts = ["anna", "bob" * 50]
    assert len(classify.predict_top_k(model, meta.model.task_meta, texts, 2, vocab=vocab)) == 2
    monkeypatch.setattr(memory, "available_memory", lambda: TINY)
    padded: list[int] = []
    monkeypatch.setattr("framework.data.feeds.labelled.pad_texts",
                        lambda ids: padded.append(1))
    with pytest.raises(ConfigError) as info:
        classify.predict_top_k(model, meta.model.task_meta, texts * 2000, 2, vocab=vocab)
    assert str(info.value).startswith("classifying 4,000 texts needs about ")
    assert "(4,000 texts padded to 150 steps) but 1 MiB is available" in str(info.value)
    assert not padded


# ------------------------------------------------------------------------ served requests
def _served(path: Path):
    from framework.tracking.pyfunc import load_text_model

    return load_text_model(path)


def _status(model, rows) -> tuple[int, str]:
    from mlflow.exceptions import MlflowException

    try:
        model.predict(None, pd.DataFrame(rows))
    except MlflowException as exc:
        return exc.get_http_status_code(), exc.message
    return 200, ""


def test_a_forecaster_asked_for_200000_rows_answers_400_with_the_limit_at_once():
    model = _served(FORECASTER)
    history = model.task.input_example(model.meta, model.vocab)["history"][0]
    assert _status(model, [{"history": history}] * 3) == (200, "")
    started = time.monotonic()
    status, message = _status(model, [{"history": history}] * 200_000)
    assert (status, message) == (400, "a request may have at most 1000 rows, got 200000; send "
                                      "it in requests of at most 1,000 rows")
    assert time.monotonic() - started < 5  # checked before any forecast (was: a 504 at 30 s)


def test_a_classifier_asked_for_huge_texts_answers_400_before_any_work(monkeypatch):
    from framework.tasks import classify

    model = _served(CLASSIFIER)
    called: list[int] = []
    monkeypatch.setattr(classify, "predict_top_k", lambda *a, **k: called.append(1) or [])
    status, message = _status(model, [{"text": "a" * 5000}] * 300)
    assert status == 400
    assert message == ("the request holds 1,500,000 characters and values, more than 1,000,000; "
                       "send fewer or shorter rows")
    assert not called


def test_a_served_classifier_whose_request_does_not_fit_in_memory_answers_400(monkeypatch):
    model = _served(CLASSIFIER)
    monkeypatch.setattr(memory, "available_memory", lambda: TINY)
    status, message = _status(model, [{"text": "anna" * 200}] * 500)
    assert status == 400 and message.startswith("classifying 500 texts needs about ")


# ------------------------------------------------------------------- labels refused at load
def _with_classes(tmp_path: Path, classes: list[str]) -> Path:
    """The classifier fixture with its metadata's class labels replaced."""
    out = tmp_path / "labels.npz"
    with zipfile.ZipFile(CLASSIFIER) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "__meta__.npy":
                meta = json.loads(np.load(io.BytesIO(data), allow_pickle=False).tobytes())
                meta["task"]["classes"] = classes + meta["task"]["classes"][len(classes):]
                buf = io.BytesIO()
                np.lib.format.write_array(
                    buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                    allow_pickle=False)
                data = buf.getvalue()
            dst.writestr(name, data)
    return out


@pytest.mark.parametrize("label, shown", [("po\rs", "'po\\rs'"), ("a\nb", "'a\\nb'"),
                                          ("t\tab", "'t\\tab'"), ("bell\x07", "'bell\\x07'"),
                                          ("   ", "'   '")])
def test_a_checkpoint_whose_class_labels_cannot_print_on_one_line_is_refused_at_load(
        tmp_path, label, shown):
    from framework.training.checkpoint import load_model

    path = _with_classes(tmp_path, [label])
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert (f"metadata field 'task.classes' must be class names that print on one line (no "
            f"control character, not blank), got {shown}") in message
    # The served model and framework.predict read checkpoints through the same loader.
    with pytest.raises(RnnlabError):
        _served(path)


def test_printable_labels_load(tmp_path):
    from framework.training.checkpoint import load_model

    load_model(_with_classes(tmp_path, ["恐竜 é", "a-b c"]))
