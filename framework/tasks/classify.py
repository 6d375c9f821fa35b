"""The ``classify`` task: many-to-one classification of a text (e.g. a name's language).

The cell stack reads each text (optionally in both directions, ``model.bidirectional=true``);
the last valid hidden state goes into a dense softmax over the classes.  Metrics per evaluation:
``val_loss`` (unweighted cross-entropy, nats), ``val_accuracy``, ``val_macro_f1``; at the end a
confusion-matrix PNG and the per-class table.  The majority-class and character-trigram naive
Bayes baselines on the same split are logged before training.  A corpus of real-valued vector
sequences (kind ``sequences``) is read, scaled, checkpointed and answered through
:mod:`framework.tasks.sequence_inputs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import RnnlabError
from framework.memory import check_buffers, forward_bytes
from framework.registry import TASKS
from framework.tasks import requests, sequence_inputs
from framework.tasks.base import Task, spec_options

MAX_CLASSES = 1 << 16  # what a checkpoint may claim
# What a sweep may optimise (reported at every eval), and which way each is better.
OBJECTIVES = {"val_loss": "minimize", "val_accuracy": "maximize", "val_macro_f1": "maximize"}


@dataclass
class ClassifyConfig:
    name: str = "classify"
    class_weights: str = "none"  # none | balanced (N / (C * count) per class)
    objective: str = "val_loss"  # what a sweep optimises: val_loss | val_accuracy | val_macro_f1
    top_k: int = 3               # classes shown per prediction

    def __post_init__(self) -> None:
        if self.class_weights not in ("none", "balanced"):
            raise ValueError(f"class_weights must be none or balanced, got {self.class_weights!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                             f"got {self.objective!r}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


def build_classifier(rc: Any, input_size: int, num_classes: int, embedding: Any = None, *,
                     ids: bool = True) -> Any:
    """The configured classifier over token ids of ``input_size`` symbols (through
    ``embedding`` when given), or (``ids=False``) over ``input_size`` real values per step."""
    from framework.nn.models.many_to_one import SequenceClassifier

    options = rc.options("cell")
    hidden_size, init = options.pop("hidden_size"), options.pop("init")
    return SequenceClassifier(rc.cell.name, input_size, num_classes, hidden_size,
                              rc.model.num_layers, rc.model.dropout, init, rc.dtype, ids=ids,
                              bidirectional=rc.model.bidirectional, cell_options=options,
                              embedding=embedding)


@TASKS.register("classify", schema=ClassifyConfig)
class ClassifyTask(Task):
    """A label per text from the last hidden state."""

    name = "classify"
    corpus_kinds = ("labelled", "sequences")  # texts, or vectors per step (sequence_inputs)
    unit = "texts"
    compare_metrics = ("val_accuracy", "val_macro_f1", "val_loss")
    objectives = OBJECTIVES
    bidirectional = True
    noun = "classifier"
    key_params = ("cell.name", "cell.hidden_size", "model.num_layers", "model.bidirectional",
                  "dataset.name", "optimizer.lr", "train.steps", "seed")
    input_columns = ("text",)
    meta_fields = ("classes", "ascii", "lower", "embedding", *sequence_inputs.META_FIELDS)
    head_reads_every_step = False  # one label per text, from the last state
    memory_knobs = ("model.embedding.size",)  # a batch is as long as its longest text

    def prepare_corpus(self, rc: Any, corpus: Any) -> Any:
        from framework.tasks.token_inputs import tokenize_corpus

        return tokenize_corpus(rc, corpus)

    def check(self, rc: Any, corpus: Any) -> None:
        from framework.tasks.token_inputs import check_embedding

        super().check(rc, corpus)
        check_embedding(rc, corpus)
        self._set_inputs(sequence_inputs.reads_sequences(corpus))

    def for_model(self, task_meta: Any) -> ClassifyTask:
        self._set_inputs(sequence_inputs.reads_sequences(task_meta))
        return self

    def _set_inputs(self, sequences: bool) -> None:
        """Vector sequences in, rather than texts: the served column and the throughput unit."""
        if sequences:
            self.input_columns, self.unit = (sequence_inputs.COLUMN,), "sequences"

    def initial_loss(self, rc: Any, corpus: Any) -> float:
        return math.log(corpus.n_classes)

    def build_model(self, rc: Any, corpus: Any) -> Any:
        from framework.tasks.token_inputs import build_embedding

        self._weights = (corpus.class_weights("balanced")
                         if self.config.class_weights == "balanced" else None)
        if sequence_inputs.reads_sequences(corpus):
            return build_classifier(rc, corpus.dim, corpus.n_classes, ids=False)
        embedding, self._vectors = build_embedding(rc, corpus.vocab)
        if self._vectors is not None:
            self.notes.append(self._vectors.summary())
        return build_classifier(rc, corpus.vocab.size, corpus.n_classes, embedding)

    def shape_model(self, rc: Any, corpus: Any) -> Any:
        from framework.tasks.token_inputs import shape_embedding

        if sequence_inputs.reads_sequences(corpus):
            return build_classifier(rc, corpus.dim, corpus.n_classes, ids=False)
        return build_classifier(rc, corpus.vocab.size, corpus.n_classes,
                                shape_embedding(rc, corpus.vocab))

    def make_feed(self, rc: Any, corpus: Any) -> Any:
        from framework.registry import FEEDS

        if sequence_inputs.reads_sequences(corpus):
            return sequence_inputs.make_feed(rc, corpus)
        return FEEDS.build({"name": "labelled"}, corpus=corpus, batch_size=rc.train.batch_size,
                           seed=rc.seed)

    def loss_and_grads(self, model: Any, batch: Any, state: Any, *, rc: Any,
                       dropout_rng: Any) -> tuple[float, float, dict, Any]:
        reduction = "mean" if rc.train.loss == "mean" else "sum"
        out = model.loss_and_grads(batch.inputs, batch.lengths, batch.labels,
                                   class_weights=self._weights, reduction=reduction,
                                   dropout_rng=dropout_rng)
        return out.total, out.count, out.grads, None

    def predictions(self, model: Any, feed: Any, rc: Any) -> tuple[np.ndarray, np.ndarray, float]:
        """(true labels, predicted labels, mean unweighted validation loss)."""
        truth, pred, total, count = [], [], 0.0, 0.0
        for index, batch in enumerate(feed.val_batches()):
            if rc.train.eval_batches and index >= rc.train.eval_batches:
                break
            out = model.evaluate(batch.inputs, batch.lengths, batch.labels)
            total += out.total
            count += out.count
            truth.append(batch.labels)
            pred.append(out.output.argmax(axis=1))
        if not truth:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), math.nan
        return np.concatenate(truth), np.concatenate(pred), total / max(count, 1e-300)

    def evaluate(self, model: Any, feed: Any, rc: Any) -> dict[str, float]:
        from framework.tasks.metrics import accuracy, macro_f1

        truth, pred, loss = self.predictions(model, feed, rc)
        if not truth.size:
            return {}
        n = model.num_classes
        return {"val_loss": loss, "val_accuracy": accuracy(truth, pred),
                "val_macro_f1": macro_f1(truth, pred, n)}

    def start_metrics(self, corpus: Any, rc: Any) -> dict[str, float]:
        from framework.tasks.baselines import classify_baselines, classify_word_baselines
        from framework.tasks.token_inputs import coverage_metrics

        out = coverage_metrics(getattr(self, "_vectors", None))
        if not corpus.n_val:
            return out
        if sequence_inputs.reads_sequences(corpus):
            out.update(sequence_inputs.baselines(corpus))
        else:  # words: naive Bayes on word unigrams and pairs, else character n-grams
            words = getattr(corpus.vocab, "kind", "") == "words"
            out.update(classify_word_baselines(corpus) if words else classify_baselines(corpus))
        return out

    def sample_lines(self, trainer: Any, step: int) -> tuple[str, list[str], list[str]]:
        corpus = trainer.corpus
        if sequence_inputs.reads_sequences(corpus):
            return sequence_inputs.sample_lines(trainer, step)
        pool = corpus.val_texts or corpus.train_texts
        picks = np.linspace(0, len(pool) - 1, min(trainer.rc.train.num_samples, len(pool)))
        texts = [pool[int(i)] for i in picks]  # spread over the classes (the split is sorted)
        meta = self.meta(corpus)
        rows = predict_top_k(trainer.model, meta, list(texts), 1, vocab=trainer.vocab,
                             prepared=True)
        header = f"step {step}: smoothed loss {trainer.smooth_loss:.4f}"
        shown = [f"{text} -> {top[0][0]} ({top[0][1]:.2f})" for text, top in zip(texts, rows,
                                                                                 strict=True)]
        return header, shown, [f"--- predictions at {header}"] + [f"  {s}" for s in shown]

    def final_artifacts(self, trainer: Any, out_dir: Path) -> list[Path]:
        from framework.tasks.metrics import (
            MAX_CONFUSION_CLASSES,
            class_counts,
            classification_table,
            confusion_matrix,
            save_confusion_png,
        )

        truth, pred, _ = self.predictions(trainer.model, trainer.feed, trainer.rc)
        if not truth.size:
            return []
        classes = trainer.corpus.classes
        out_dir.mkdir(parents=True, exist_ok=True)
        table = out_dir / "per_class.txt"
        table.write_text(classification_table(class_counts(truth, pred, len(classes)), classes),
                         encoding="utf-8")
        if len(classes) > MAX_CONFUSION_CLASSES:  # unreadable, and (C, C) memory
            return [table]
        png = out_dir / "confusion_matrix.png"
        save_confusion_png(confusion_matrix(truth, pred, len(classes)), classes, png,
                           title=f"{trainer.corpus.name}: validation")
        return [png, table]

    def summary(self, metrics: dict[str, float], vocab: Any = None) -> str:
        return (f"val loss {metrics.get('val_loss', math.nan):.4f}, accuracy "
                f"{metrics.get('val_accuracy', math.nan):.4f}, macro-F1 "
                f"{metrics.get('val_macro_f1', math.nan):.4f}")

    def meta(self, corpus: Any) -> dict[str, Any]:
        out = {"classes": list(corpus.classes), "ascii": bool(corpus.metadata.get("ascii")),
               "lower": bool(corpus.metadata.get("lower"))}
        if sequence_inputs.reads_sequences(corpus):
            out.update(sequence_inputs.meta(corpus))
        return out

    def checkpoint_field(self, rc: Any, corpus: Any) -> dict[str, Any] | None:
        from framework.tasks.token_inputs import embedding_field

        field = super().checkpoint_field(rc, corpus)
        embedding = embedding_field(rc)
        return field if embedding is None else {**field, "embedding": embedding}

    def describe_data(self, rc: Any, corpus: Any = None) -> str:
        classes = getattr(corpus, "classes", None)
        return f"{rc.dataset.name} ({len(classes)} classes)" if classes else rc.dataset.name

    # -- checkpoints -----------------------------------------------------------------------
    @classmethod
    def read_meta(cls, fields: Any, raw: Any, options: Any) -> dict[str, Any]:
        classes = raw.get("classes")
        if (not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES
                or not all(isinstance(c, str) and c for c in classes)):
            raise fields.fail("task.classes", f"a list of 2 to {MAX_CLASSES} class names",
                              classes)
        from framework.data.corpora.labelled import check_label
        from framework.errors import DataError
        from framework.tasks.token_inputs import read_embedding_field

        for label in classes:  # refused at load, as when the data loads: printed one per line
            try:
                check_label(label)
            except DataError:
                raise fields.fail("task.classes", "class names that print on one line (no "
                                  "control character, not blank)", label) from None
        out = {"classes": list(classes), "ascii": raw.get("ascii") is True,
               "lower": raw.get("lower") is True}
        out.update(sequence_inputs.read_meta(fields, raw))
        embedding = read_embedding_field(fields, raw)
        return out if embedding is None else {**out, "embedding": embedding}

    @classmethod
    def reads_vocab(cls, task_meta: Any) -> bool:
        return not sequence_inputs.reads_sequences(task_meta)

    @classmethod
    def model_from_meta(cls, spec: Any, vocab: Any) -> Any:
        from framework.nn.models.many_to_one import SequenceClassifier
        from framework.tasks.token_inputs import embedding_from_field

        if sequence_inputs.reads_sequences(spec.task_meta):
            return sequence_inputs.model_from_meta(spec, spec_options(spec))
        return SequenceClassifier(spec.cell, vocab.size, len(spec.task_meta["classes"]),
                                  **spec_options(spec),
                                  bidirectional=spec.task_meta["bidirectional"],
                                  embedding=embedding_from_field(spec.task_meta, vocab))

    # -- using a trained model -------------------------------------------------------------
    def predict(self, model: Any, vocab: Any, meta: Any, cfg: Any) -> list[str]:
        """``text: class p, class p, ...`` (the ``top_k`` best classes) for each ``text``, or for
        each sequence of the ``sequence`` file(s) of a model of vector sequences."""
        top_k = requests.positive_int(cfg.get("top_k"), "top_k")
        task_meta = meta.model.task_meta
        if sequence_inputs.reads_sequences(task_meta):
            named = sequence_inputs.command_sequences(cfg.get("sequence"), task_meta)
            texts = [name for name, _ in named]
            rows = sequence_inputs.predict(model, task_meta, [seq for _, seq in named], top_k)
        else:
            texts = requests.text_request(cfg, "to classify")
            rows = predict_top_k(model, task_meta, texts, top_k, vocab=vocab)
        return [f"{text}: " + ", ".join(f"{name} {p:.3f}" for name, p in top)
                for text, top in zip(texts, rows, strict=True)]

    def signature(self) -> Any:
        if self.input_columns == (sequence_inputs.COLUMN,):
            return sequence_inputs.signature()
        return super().signature()

    def input_example(self, meta: Any, vocab: Any) -> dict[str, list[Any]]:
        if sequence_inputs.reads_sequences(meta.model.task_meta):
            return sequence_inputs.input_example(meta.model.task_meta)
        return {"text": [requests.example_letters(vocab) or "a"]}

    def serve(self, served: Any, frame: Any) -> list[str]:
        """``"class p, class p, ..."`` (the top ``task.top_k`` classes) for each ``text`` (or
        ``sequence`` of a model of vector sequences)."""
        task_meta = served.meta.model.task_meta
        if sequence_inputs.reads_sequences(task_meta):
            seqs = sequence_inputs.served_sequences(frame, task_meta)
            rows = sequence_inputs.predict(served.model, task_meta, seqs, self.config.top_k)
        else:
            if "text" not in frame.columns:
                raise RnnlabError("a classifier's input needs a 'text' column")
            texts = requests.served_texts(frame)
            rows = predict_top_k(served.model, task_meta, texts, self.config.top_k,
                                 vocab=served.vocab)
        return [", ".join(f"{name} {p:.4f}" for name, p in top) for top in rows]


def predict_top_k(model: Any, meta: dict, texts: list[str], k: int, *, vocab: Any = None,
                  prepared: bool = False) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) per text; texts are normalised as at training time."""
    from framework.data.corpora.labelled import prepare_text
    from framework.data.feeds.labelled import pad_texts
    from framework.errors import DataError
    from framework.tasks.metrics import top_classes

    vocab = vocab if vocab is not None else meta.get("_vocab")
    classes = meta["classes"]
    if not prepared:
        texts = [prepare_text(t, ascii=meta.get("ascii", False), lower=meta.get("lower", False))
                 for t in texts]
    if any(not t for t in texts):
        raise DataError("cannot classify an empty text; give at least one character")
    if vocab is None:
        raise DataError("no vocabulary to encode the texts with")
    ids = [np.asarray(vocab.encode(t), dtype=np.int64) for t in texts]
    steps = max(len(x) for x in ids)  # the texts are padded to the longest
    check_buffers(f"classifying {len(ids):,} texts", forward_bytes(model, len(ids), steps),
                  f"{len(ids):,} texts padded to {steps:,} steps", "pass fewer or shorter texts")
    inputs, lengths = pad_texts(ids)
    probs = model.predict_proba(inputs, lengths)
    return [top_classes(row, classes, k) for row in probs]


__all__ = ["MAX_CLASSES", "ClassifyConfig", "ClassifyTask", "build_classifier", "predict_top_k"]
