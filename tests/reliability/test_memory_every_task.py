"""Memory is sized before it is spent in every task: training (seq2seq's two stacks and its
attention, embeddings and their pretrained vectors, the forecaster's window), the AR baseline,
decoding (beam width, output length), and prediction and serving of every task; each refusal is
one line naming what to lower. Seq2seq's served and command-line answers also refuse source
characters the model never saw, naming them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from framework import memory
from framework.errors import ConfigError, DataError
from framework.training import resources
from framework.training.trainer import Reporter, Trainer
from tests.helpers import QUICK, run_config

GiB = 2**30
ISO = "2018-05-09"


class Quiet:
    def log_metrics(self, values, step) -> None:
        pass


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    sources = [f"{d} {m} {y}" for d in ("9", "09", "may 9") for m in ("may", "05")
               for y in ("2018", "18")]
    path.write_text("".join(f"{s}\t{ISO}\n" for s in sources), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = tmp_path_factory.mktemp("labelled") / "labels.tsv"
    path.write_text("".join(f"{t}\t{label}\n" for t, label in
                            [("good day", "pos"), ("fine film", "pos"), ("nice one", "pos"),
                             ("bad day", "neg"), ("awful film", "neg"), ("dull one", "neg")]))
    return path


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    path = tmp_path_factory.mktemp("series") / "series.csv"
    path.write_text("value\n" + "".join(f"{math.sin(i / 5):.4f}\n" for i in range(200)))
    return path


SEQ2SEQ = ["task=seq2seq", "cell.hidden_size=8", "task.decoder.hidden_size=12",
           "model.bidirectional=true", "train.batch_size=4", "dataset=parallel_textfile",
           "dataset.val_fraction=0.25", "mlflow.enabled=false", "train.sample_every=0"]


def _trainer(overrides, tmp_path):
    return Trainer(run_config([*QUICK, *overrides]), out_dir=tmp_path,
                   reporter=Reporter(Quiet(), lambda _: None))


@pytest.fixture(scope="module")
def seq2seq_model(tmp_path_factory, pairs):
    trainer = _trainer([*SEQ2SEQ, f"dataset.path={pairs}", "train.steps=2",
                        "train.eval_every=2", "train.checkpoint_every=2"],
                       tmp_path_factory.mktemp("s2s"))
    trainer.run()
    return trainer.last_checkpoint


def _no_params(monkeypatch):
    """Record any model whose parameters get allocated (none may be)."""
    from framework.nn.models import language_model, many_to_one, seq2seq

    built = []
    for cls in (language_model.CharRNN, many_to_one.SequenceClassifier,
                many_to_one.SequenceForecaster, seq2seq.Seq2Seq):
        monkeypatch.setattr(cls, "init_params",
                            lambda self, *a, **k: built.append(self) or {})
    return built


@pytest.mark.parametrize("setting, value", [("task.decoder.hidden_size", 200_000),
                                            ("task.encoder.hidden_size", 200_000),
                                            ("task.attention_units", 1_000_000)])
def test_a_seq2seq_config_that_does_not_fit_is_refused_before_the_model_exists(
        monkeypatch, tmp_path, pairs, setting, value):
    built = _no_params(monkeypatch)
    monkeypatch.setattr(resources, "available_memory", lambda: (GiB, "a test's 1 GiB"))
    if setting == "task.decoder.hidden_size":
        extra = ["task.attention=additive"]
    else:
        extra = []
    with pytest.raises(ConfigError) as info:
        _trainer([*SEQ2SEQ, f"dataset.path={pairs}", f"{setting}={value}", *extra], tmp_path)
    message = str(info.value)
    assert "\n" not in message and not built
    assert message.startswith("this config needs about") and setting in message
    assert "1.0 GiB is available (a test's 1 GiB)" in message


def _built_values(trainer) -> int:
    return sum(v.size for v in trainer.model.params.values())


@pytest.mark.parametrize("task", ["lm-onehot", "lm-embedding", "classify-bidirectional",
                                  "forecast", "seq2seq"])
def test_every_tasks_estimate_counts_its_models_parameters_exactly(tmp_path, pairs, series,
                                                                   labelled, task):
    overrides = {
        "lm-onehot": ["dataset=textfile", f"dataset.path={pairs}", "dataset.mode=lines",
                      "cell=lstm", "model.num_layers=3"],
        "lm-embedding": ["dataset=textfile", f"dataset.path={pairs}", "dataset.mode=lines",
                         "model.embedding.size=6", "model.num_layers=2"],
        "classify-bidirectional": ["task=classify", "dataset=labelled_textfile",
                                   f"dataset.path={labelled}", "model.bidirectional=true",
                                   "model.num_layers=3", "dataset.val_fraction=0.3"],
        "forecast": ["task=forecast", "dataset=csv_series", f"dataset.path={series}",
                     "dataset.column=value", "task.window=12", "task.horizon=3",
                     "model.num_layers=2"],
        "seq2seq": [*SEQ2SEQ, f"dataset.path={pairs}", "task.decoder.embed_size=5",
                    "task.decoder.num_layers=2"],
    }[task]
    trainer = _trainer(overrides, tmp_path)
    need = resources.training_estimate(trainer.rc, trainer.corpus, trainer.feed.kind)
    assert need.parameters == _built_values(trainer) * 4  # float32
    assert need.activations > 0


def test_a_forecasters_window_is_what_its_batch_holds(tmp_path, series):
    def need(window: int) -> int:
        trainer = _trainer(["task=forecast", "dataset=csv_series", f"dataset.path={series}",
                            "dataset.column=value", f"task.window={window}"], tmp_path)
        return resources.training_estimate(trainer.rc, trainer.corpus,
                                           trainer.feed.kind).activations

    # The forward caches grow with the window, step for step; train.seq_len plays no part.
    assert need(100) - need(10) == 9 * (need(20) - need(10)) > 0


def test_pretrained_vectors_are_counted_before_they_are_read(tmp_path, pairs):
    trainer = _trainer(["dataset=textfile", f"dataset.path={pairs}", "dataset.mode=lines",
                        "model.embedding.size=6"], tmp_path)
    from dataclasses import replace

    rc = trainer.rc
    with_vectors = replace(rc, model=replace(rc.model, embedding=replace(
        rc.model.embedding, pretrained="/nonexistent/vectors.txt")))
    plain = resources.training_estimate(rc, trainer.corpus, trainer.feed.kind)
    more = resources.training_estimate(with_vectors, trainer.corpus, trainer.feed.kind)
    assert more.activations - plain.activations == 4 * trainer.corpus.vocab.size * 6


def test_an_ar_baseline_that_does_not_fit_is_skipped_with_one_warning(monkeypatch, capsys,
                                                                       tmp_path, series):
    from framework.tasks.baselines import forecast_baselines

    trainer = _trainer(["task=forecast", "dataset=csv_series", f"dataset.path={series}",
                        "dataset.column=value", "task.window=30"], tmp_path)
    assert "baseline_ar_rmse" in forecast_baselines(trainer.corpus, 30)
    monkeypatch.setattr(memory, "available_memory", lambda: (1000, "a test's 1000 bytes"))
    out = forecast_baselines(trainer.corpus, 30)
    assert "baseline_ar_rmse" not in out and "baseline_persistence_rmse" in out
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("rnnlab: warning: the AR(30) baseline needs "
                                               "about")
    assert "x 31 lags, float64" in err[0] and err[0].endswith(
        "; lower task.window (or set RNNLAB_SKIP_MEMORY_CHECK=1 to try anyway)")


def test_decoding_takes_fewer_sources_at_a_time_when_a_batch_would_not_fit(monkeypatch,
                                                                           seq2seq_model):
    from framework.tasks import translation
    from framework.training.checkpoint import load_model

    model, vocab, meta = load_model(seq2seq_model)
    task_meta = meta.model.task_meta
    texts = ["9 may 2018", "09 05 18", "may 9 2018"] * 4
    from framework.tasks.seq2seq import Seq2SeqTask

    task = Seq2SeqTask()
    whole, scores = task.translate_texts(model, vocab, task_meta, texts)
    one = translation.decoding_bytes(model, 1, 10, 1, int(task_meta["max_target_length"]) + 1)
    monkeypatch.setattr(memory, "available_memory", lambda: (3 * one, "a test's 3 rows"))
    seen = []
    real = model.encode
    monkeypatch.setattr(model, "encode", lambda x, n: seen.append(len(n)) or real(x, n))
    assert task.translate_texts(model, vocab, task_meta, texts)[0] == whole
    assert max(seen) <= 3
    monkeypatch.setattr(memory, "available_memory", lambda: (one // 2, "a test's half row"))
    with pytest.raises(ConfigError) as info:
        task.translate_texts(model, vocab, task_meta, texts,
                             {"name": "beam", "width": 2})
    message = str(info.value)
    assert "\n" not in message and message.startswith("decoding 1 source texts needs about")
    assert "1 x 2 hypotheses" in message
    assert message.endswith("; pass fewer or shorter texts, or a smaller decoder.width (or "
                            "set RNNLAB_SKIP_MEMORY_CHECK=1 to try anyway)")


def test_the_served_seq2seq_model_answers_400_for_memory_and_unseen_characters(
        monkeypatch, seq2seq_model):
    from mlflow.exceptions import MlflowException

    from framework.tracking.pyfunc import load_text_model

    served = load_text_model(seq2seq_model)
    with pytest.raises(MlflowException) as info:
        served.predict(None, ["9 may 2018", "9 MAY 2018 ☃"])
    message = info.value.message
    assert info.value.get_http_status_code() == 400
    assert message == ("text 2 has characters that are not in the vocabulary: 'A', 'M', 'Y', "
                       "'☃' (this vocabulary is lower-case; lower-case the text); the "
                       "vocabulary is ' 012589amy'"), message
    assert "\ufffd" not in message
    monkeypatch.setattr(memory, "available_memory", lambda: (10, "a test's 10 bytes"))
    with pytest.raises(MlflowException) as info:
        served.predict(None, ["9 may 2018"])
    assert info.value.get_http_status_code() == 400
    assert info.value.message.startswith("decoding 1 source texts needs about")


def test_a_forecast_prediction_that_does_not_fit_is_one_line(monkeypatch, tmp_path, series):
    from framework.tasks.forecast import forecast_values

    trainer = _trainer(["task=forecast", "dataset=csv_series", f"dataset.path={series}",
                        "dataset.column=value", "task.window=12", "train.steps=1"], tmp_path)
    meta = trainer.task.checkpoint_field(trainer.rc, trainer.corpus)
    trainer.model.init_params(np.random.default_rng(0))
    history = [0.1] * 12
    assert forecast_values(trainer.model, meta, history).shape == (1, 1)
    monkeypatch.setattr(memory, "available_memory", lambda: (10, "a test's 10 bytes"))
    with pytest.raises(ConfigError, match=r"^forecasting needs about .*\(a window of 12 values"):
        forecast_values(trainer.model, meta, history)


def test_classifying_sequences_that_do_not_fit_is_one_line(monkeypatch):
    from framework.nn.models.many_to_one import SequenceClassifier
    from framework.tasks import sequence_inputs

    model = SequenceClassifier("lstm", 3, 2, 8, 1, 0.0, "xavier", "float32", ids=False)
    model.init_params(np.random.default_rng(0))
    meta = {"feature_mean": [0.0] * 3, "feature_std": [1.0] * 3, "classes": ["a", "b"]}
    seqs = [np.ones((5, 3)), np.ones((7, 3))]
    assert len(sequence_inputs.predict(model, meta, seqs, 1)) == 2
    monkeypatch.setattr(memory, "available_memory", lambda: (10, "a test's 10 bytes"))
    with pytest.raises(ConfigError) as info:
        sequence_inputs.predict(model, meta, seqs, 1)
    assert str(info.value).startswith("classifying 2 sequences needs about")
    assert "pass fewer or shorter sequences" in str(info.value)


def test_unseen_characters_are_refused_by_the_one_encoder_of_sources(seq2seq_model):
    from framework.tasks.translation import encode_texts
    from framework.training.checkpoint import load_model

    _, vocab, _ = load_model(seq2seq_model)
    assert [len(x) for x in encode_texts(vocab, ["9 may 18"], 20)] == [8]
    with pytest.raises(DataError, match=r"^text 1 has characters that are not in the "
                                        r"vocabulary: 'x'; the vocabulary is '"):
        encode_texts(vocab, ["9 max 18"], 20)


def test_a_language_models_beam_or_samples_that_do_not_fit_are_one_line(monkeypatch):
    from framework.data.vocab import Vocab
    from framework.nn.decoding import build_decoder
    from framework.nn.generation import generate_scored
    from framework.nn.models.language_model import CharRNN

    vocab = Vocab.from_text("abcdefgh\n", eos="\n")
    model = CharRNN("lstm", vocab.size, 8, 1)
    model.init_params(np.random.default_rng(0))
    beam = build_decoder({"name": "beam", "width": 4}, vocab_size=vocab.size)
    assert len(generate_scored(model, vocab, beam, prompt="ab", length=5)) == 1
    monkeypatch.setattr(memory, "available_memory", lambda: (100, "a test's 100 bytes"))
    with pytest.raises(ConfigError) as info:
        generate_scored(model, vocab, beam, prompt="ab", length=5)
    assert str(info.value).startswith("generating 4 row(s) at once needs about")
    assert "; lower decoder.width, num_samples or length (or set" in str(info.value)
