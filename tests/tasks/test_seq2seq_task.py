"""The seq2seq task end to end: training on generated dates, metrics, attention maps, the
checkpoint round trip and bit-identical resume, ``framework.predict`` (ISO dates out), the served
model, ``framework.compare``, and one line for each kind of bad input."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from framework.errors import ConfigError, DataError
from framework.training.checkpoint import load_model
from framework.training.trainer import Reporter, Trainer
from tests.helpers import run_cli, run_config, sqlite_store

pytest.importorskip("faker")
pytest.importorskip("babel")

TINY = ["task=seq2seq", "cell=lstm", "cell.hidden_size=8", "task.decoder.hidden_size=12",
        "model.bidirectional=true", "train.batch_size=16", "train.log_every=1",
        "train.sample_every=0", "mlflow.enabled=false", "train.num_samples=2",
        "optimizer.lr=0.01"]
DATES = [*TINY, "dataset=dates", "dataset.n_train=200", "dataset.n_val=40"]
ISO = "2018-05-09"


class Quiet:
    def log_metrics(self, values, step) -> None:
        self.last = values


def train(overrides: list[str], out, steps: int = 6) -> Trainer:
    trainer = Trainer(run_config([*overrides, f"train.steps={steps}",
                                  f"train.eval_every={steps}", f"train.checkpoint_every={steps}"]),
                      out_dir=out, reporter=Reporter(Quiet(), lambda _: None))
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def dates_model(tmp_path_factory):
    return train(DATES, tmp_path_factory.mktemp("dates"), steps=8)


@pytest.fixture(scope="module")
def constant_pairs(tmp_path_factory):
    """Human dates that all translate to one ISO date: a model learns that in a few dozen
    steps, so what ``predict`` prints can be asserted exactly."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    sources = [f"{day} {month} {year}" for day in ("wednesday 9", "9", "09", "may 9")
               for month in ("may", "05", "mai") for year in ("2018", "18", "y2018")]
    path.write_text("".join(f"{s}\t{ISO}\n" for s in sources), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory, constant_pairs):
    return train([*TINY, "dataset=parallel_textfile", f"dataset.path={constant_pairs}",
                  "dataset.val_fraction=0.2", "train.batch_size=8"],
                 tmp_path_factory.mktemp("constant"), steps=60)


def test_training_reports_loss_token_accuracy_and_exact_match(dates_model, tmp_path):
    metrics = dates_model.last_metrics
    assert set(metrics) == {"val_loss", "val_token_accuracy", "val_exact_match"}
    assert math.isfinite(metrics["val_loss"])
    assert 0.0 <= metrics["val_token_accuracy"] <= 1.0
    assert 0.0 <= metrics["val_exact_match"] <= 1.0
    # The per-token loss starts at ln(12) (a uniform guess over 10 digits, '-' and the end).
    assert metrics["val_loss"] < math.log(dates_model.corpus.tgt_vocab.size) + 0.5
    paths = dates_model.task.final_artifacts(dates_model, tmp_path)
    assert [p.name for p in paths] == [f"attention_{k}.png" for k in range(1, 5)]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_exact_match_counts_whole_targets(dates_model):
    """A model that decodes every held-out target exactly scores 1; the metric is the share of
    whole targets right, checked against a decoding of its own."""
    from framework.tasks.translation import build_decoder, translate

    task, feed, model = dates_model.task, dates_model.feed, dates_model.model
    hyps = translate(model, [s for s, _ in feed.val_pairs], build_decoder(None, 12),
                     max_length=11, eos_id=feed.end_id)
    want = [t.tolist() for _, t in feed.val_pairs]
    share = sum(h.ids == w for h, w in zip(hyps, want, strict=True)) / len(want)
    assert task.evaluate(model, feed, dates_model.rc)["val_exact_match"] == share


def test_samples_show_held_out_sources_and_their_translations(dates_model):
    header, shown, lines = dates_model.task.sample_lines(dates_model, 8)
    assert header.startswith("step 8") and len(shown) == 2
    sources = {s for s, _ in dates_model.corpus.val_pairs}
    assert all(line.split(" -> ")[0] in sources for line in shown)
    assert lines[0].startswith("--- translations at step 8")


def test_the_checkpoint_round_trip_rebuilds_the_same_model(dates_model):
    model, vocab, meta = load_model(dates_model.last_checkpoint)
    task_meta = meta.model.task_meta
    assert task_meta["name"] == "seq2seq" and task_meta["max_target_length"] == 10
    assert vocab.chars == dates_model.corpus.src_vocab.chars
    for key, value in dates_model.model.params.items():
        np.testing.assert_array_equal(value, model.params[key], err_msg=key)
    batch = next(dates_model.feed.val_batches())
    assert model.evaluate(batch) == dates_model.model.evaluate(batch)


@pytest.mark.parametrize("extra", [[], ["task.encoder.cell=gru", "task.decoder.cell=rnn",
                                        "task.attention=none", "model.bidirectional=false"]])
def test_resume_is_bit_identical(tmp_path, extra):
    overrides = [*DATES, *extra]
    full = train(overrides, tmp_path / "full", steps=6)
    half = train(overrides, tmp_path / "half", steps=3)
    resumed = Trainer(run_config([*overrides, "train.steps=6", "train.eval_every=6",
                                  "train.checkpoint_every=6"]),
                      out_dir=tmp_path / "resumed", reporter=Reporter(Quiet(), lambda _: None))
    resumed.restore(half.last_checkpoint)
    resumed.run()
    for key, value in full.model.params.items():
        np.testing.assert_array_equal(value, resumed.model.params[key], err_msg=key)


def test_encoder_decoder_and_attention_are_chosen_independently(tmp_path):
    rc = run_config([*DATES, "task.encoder.cell=gru", "task.decoder.cell=rnn",
                     "task.attention=dot", "task.attention_general=true",
                     "task.decoder.embed_size=5", "task.encoder.num_layers=2"])
    trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(Quiet(), lambda _: None))
    model = trainer.model
    assert type(model.encoder.stacks[0].cell).__name__.lower().startswith("gru")
    assert type(model.decoder.cell).__name__.lower().startswith("rnn")
    assert model.encoder.stacks[0].num_layers == 2 and model.embed_size == 5
    assert "attn.W" in model.params and model.decoder_hidden == 12
    assert trainer.task.tags(rc) == {"task": "seq2seq", "encoder": "gru", "decoder": "rnn",
                                     "attention": "dot"}


def test_predict_prints_the_translation_of_each_text(constant_model, tmp_path):
    ckpt = f"checkpoint={constant_model.last_checkpoint}"
    proc = run_cli("framework.predict", [ckpt, "text=wednesday may 9 2018"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{ISO}\n"
    proc = run_cli("framework.predict", [ckpt, "text=[9 may 2018,09 05 18]", "score=true",
                                         "decoder=beam", "decoder.width=3"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [out for out, _ in lines] == [ISO, ISO]
    assert all(-5.0 < float(score) <= 0.0 for _, score in lines)


def test_predict_on_the_dates_model_prints_one_date_shaped_line_per_text(dates_model, tmp_path):
    proc = run_cli("framework.predict", [f"checkpoint={dates_model.last_checkpoint}",
                                         "text=[wednesday may 9 2018,5/9/18,09.05.18]"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(re.fullmatch(r"[0-9-]{0,11}", line) for line in lines)


def test_beam_search_and_greedy_agree_on_a_confident_model(constant_model):
    task = constant_model.task
    model, vocab, meta = load_model(constant_model.last_checkpoint)
    texts = ["wednesday may 9 2018", "9 mai 18"]
    greedy, g_scores = task.translate_texts(model, vocab, meta.model.task_meta, texts)
    beam, b_scores = task.translate_texts(model, vocab, meta.model.task_meta, texts,
                                          {"name": "beam", "width": 3})
    assert greedy == beam == [ISO, ISO]
    assert all(b >= g - 1e-9 for b, g in zip(b_scores, g_scores, strict=True))


def test_the_served_model_returns_translations_and_float_scores(constant_model):
    import pandas as pd

    from framework.tracking.pyfunc import load_text_model

    served = load_text_model(constant_model.last_checkpoint)
    out = served.predict(None, pd.DataFrame({"text": ["wednesday may 9 2018", "9 may 18"]}))
    assert list(out.columns) == ["translation", "score"]
    assert out["translation"].tolist() == [ISO, ISO]
    assert out["score"].dtype == np.float64 and (out["score"] <= 0).all()
    assert served.predict(None, "9 may 2018")["translation"].tolist() == [ISO]
    mixed = served.predict(None, pd.DataFrame({"text": ["9 may 2018", "09 may 18", "9 mai 18"],
                                               "decoder": ["beam", None, "beam"],
                                               "width": [3, None, 2]}))
    assert mixed["translation"].tolist() == [ISO, ISO, ISO]
    greedy = served.predict(None, pd.DataFrame({"text": ["9 may 2018"]}))["score"][0]
    assert mixed["score"][0] >= greedy - 1e-5  # float32: batches of 2 and 1 round differently
    sig = constant_model.task.signature()
    assert [c.name for c in sig.outputs.inputs] == ["translation", "score"]


@pytest.mark.parametrize("text, message", [
    ("", "text 1 is empty"),
    ("x" * 200, "text 1 has 200 characters, more than the"),
])
def test_bad_texts_are_one_line_errors(constant_model, tmp_path, text, message):
    proc = run_cli("framework.predict", [f"checkpoint={constant_model.last_checkpoint}",
                                         f"text='{text}'"], tmp_path)
    assert proc.returncode != 0 and proc.stdout == ""
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_unseen_source_characters_are_refused_naming_them(constant_model, tmp_path):
    """As the language model refuses a prompt outside its vocabulary: one line, exit 2."""
    proc = run_cli("framework.predict", [f"checkpoint={constant_model.last_checkpoint}",
                                         "text=[9 may 2018,9 may 2018 ☃]"], tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert line.startswith("rnnlab: error: text 2 has characters that are not in the "
                           "vocabulary: '☃'; the vocabulary is '"), line
    assert "\ufffd" not in line and "�" not in line


@pytest.mark.parametrize("node, message", [
    ({"name": "beam", "width": 0}, "width must be >= 1"),
    ({"name": "beam", "width": 99}, "decoder.width=99 is larger than the 8 symbols"),
])
def test_a_beam_width_outside_the_target_vocabulary_is_one_line(constant_model, node, message):
    model, vocab, meta = load_model(constant_model.last_checkpoint)
    with pytest.raises(ConfigError, match=message):
        constant_model.task.translate_texts(model, vocab, meta.model.task_meta, ["9 may 18"],
                                            node)


def test_the_served_model_refuses_bad_texts_as_bad_requests(constant_model):
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from framework.tracking.pyfunc import load_text_model

    served = load_text_model(constant_model.last_checkpoint)
    with pytest.raises(MlflowException, match="text 2 is empty"):
        served.predict(None, ["9 may 18", ""])
    with pytest.raises(MlflowException, match="width"):
        served.predict(None, pd.DataFrame({"text": ["9 may 18"], "decoder": ["beam"],
                                           "width": [50]}))


def test_a_malformed_pairs_file_names_its_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("9 may 2018\t2018-05-09\nno tab here\n", encoding="utf-8")
    proc = run_cli("framework", [*TINY, "dataset=parallel_textfile", f"dataset.path={path}"],
                   tmp_path)
    assert proc.returncode != 0 and "line 2" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


SMALL_DATES = ["dataset=dates", "dataset.n_train=50", "dataset.n_val=10"]


@pytest.mark.parametrize("overrides, message", [
    (["dataset=dinos"], "task 'seq2seq' needs a dataset of kind parallel"),
    ([*SMALL_DATES, "train.loss=sum"], "train.loss=mean"),
    ([*SMALL_DATES, "task.attention=dott"], "unknown attention 'dott'"),
    ([*SMALL_DATES, "task.encoder.cell=lstmm"], "unknown cell 'lstmm'"),
    ([*SMALL_DATES, "task.attention=dot"], "attention.general=true"),
])
def test_configs_that_do_not_fit_are_one_line_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(run_config([*TINY, *overrides]), out_dir=tmp_path,
                reporter=Reporter(Quiet(), lambda _: None))


def test_a_tampered_target_vocabulary_is_a_one_line_checkpoint_error(constant_model, tmp_path):
    from framework.errors import CheckpointError
    from framework.training.checkpoint import load_checkpoint
    from framework.training.checkpoint.files import save_checkpoint

    arrays, meta = load_checkpoint(constant_model.last_checkpoint)
    for field, value, message in (("target_vocab", "[1, 2", "task.target_vocab"),
                                  ("max_source_length", -3, "task.max_source_length"),
                                  ("max_target_length", 1 << 40, "task.max_target_length")):
        bad = {**meta, "task": {**meta["task"], field: value}}
        path = tmp_path / f"{field}.npz"
        save_checkpoint(path, arrays, bad)
        with pytest.raises(CheckpointError, match=message):
            load_model(path)


def test_a_tracked_run_is_compared_and_predicted_by_run_id(constant_pairs, tmp_path):
    uri = sqlite_store(tmp_path / "mlflow.db")
    proc = run_cli("framework", [*TINY, "dataset=parallel_textfile",
                                 f"dataset.path={constant_pairs}", "dataset.val_fraction=0.2",
                                 "train.batch_size=8", "train.steps=4", "train.eval_every=4",
                                 "mlflow.enabled=true", f"mlflow.tracking_uri={uri}",
                                 "mlflow.experiment_name=s2s", "mlflow.log_model=false"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "exact match" in proc.stdout
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", proc.stdout + proc.stderr).group(1)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    names = {a.path for a in client.list_artifacts(run_id, "results")}
    assert "results/attention_1.png" in names
    # A narrow terminal drops param columns, never the task's metrics.
    table = run_cli("framework.compare", ["s2s", f"mlflow.tracking_uri={uri}"], tmp_path,
                    env={"COLUMNS": "60"})
    assert table.returncode == 0, table.stderr
    assert "val_exact_match" in table.stdout and "val_token_accuracy" in table.stdout
    proc = run_cli("framework.predict", [f"run_id={run_id}", f"mlflow.tracking_uri={uri}",
                                         "text=9 may 2018"], tmp_path)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1, proc.stderr


def test_data_errors_from_the_model_stay_data_errors(constant_model):
    model, vocab, meta = load_model(constant_model.last_checkpoint)
    with pytest.raises(DataError, match="text 2 is empty"):
        constant_model.task.translate_texts(model, vocab, meta.model.task_meta, ["9 may", ""])



FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tasks" \
    / "seq2seq_dates_bilstm_gru.npz"


def test_the_first_seq2seq_checkpoint_format_still_loads_and_answers_as_it_did():
    """A 3-step checkpoint kept from when the task was added (tests/fixtures/tasks/README.md):
    its untrained answers, recorded then, must not change."""
    from omegaconf import OmegaConf

    from framework.cli.predict import run as predict
    from framework.tracking.pyfunc import load_text_model

    def answer(texts, decoder):
        return predict(OmegaConf.create({"checkpoint": str(FIXTURE), "run_id": None,
                                         "text": texts, "score": True, "decoder": decoder}))

    assert answer(["9 may 2018", "wednesday may 9 2018"], {"name": "greedy"}) == [
        "-7228888888\t-25.8983", "-70--70--70\t-25.2976"]
    assert answer(["9 may 2018"], {"name": "beam", "width": 3}) == ["-70--9-7-72\t-25.3468"]
    served = load_text_model(FIXTURE).predict(None, ["9 may 2018"])
    assert served["translation"].tolist() == ["-7228888888"]
    assert served["score"][0] == pytest.approx(-25.898325, abs=1e-5)
    model, _, meta = load_model(FIXTURE)
    assert meta.step == 3 and meta.model.task_meta["options"]["decoder"]["cell"] == "gru"
