"""The classify task on real-valued vector sequences (``(timesteps, features)`` per example).

What ``task=classify`` does differently when its corpus is of kind ``sequences`` rather than
labelled texts (the model is the text classifier with dense inputs): the feed standardises every
frame with the training split's per-feature mean and standard deviation, the baselines are the
majority class and a 1-nearest-neighbour on each sequence's per-channel mean and standard
deviation, and the checkpoint's ``task`` field stores the feature count, names and
standardisation, so that ``framework.predict`` (a file of frames) and the served model (a
``sequence`` column of lists of numbers) apply the same scaling to new sequences.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from framework.data.corpora.sequences import MAX_FEATURES, check_sequence
from framework.errors import ConfigError, DataError, RnnlabError
from framework.tasks import requests

# The ``task`` field's marker of a model over vector sequences, and its keys beyond the classes.
INPUTS = "sequences"
META_FIELDS = ("inputs", "features", "feature_mean", "feature_std")
COLUMN = "sequence"  # the served model's input column
# The most time steps a sequence to classify may have, and the most values (steps x features)
# one served request may hold in all: what bounds the work and memory of one answer.
MAX_STEPS = requests.MAX_LENGTH
MAX_REQUEST_VALUES = 1_000_000
MAX_JSON_CHARS = 32 * MAX_REQUEST_VALUES  # a sequence sent as JSON text, checked before parsing
# Padded cells (steps x sequences x features) of one prediction batch: a long sequence does not
# pad every short one of the request to its length.
BATCH_VALUES = 1 << 20


def reads_sequences(source: Any) -> bool:
    """Does this corpus (training) or checkpoint ``task`` field (a saved model) hold vector
    sequences rather than texts?"""
    if isinstance(source, Mapping):
        return source.get("inputs") == INPUTS
    return getattr(source, "kind", None) == INPUTS


# -- training --------------------------------------------------------------------------------
def make_feed(rc: Any, corpus: Any) -> Any:
    """Padded, masked batches of standardised sequences in the model's dtype."""
    from framework.registry import FEEDS

    return FEEDS.build({"name": "sequences"}, corpus=corpus, batch_size=rc.train.batch_size,
                       seed=rc.seed, dtype=rc.dtype)


def baselines(corpus: Any) -> dict[str, float]:
    """The majority class and the summary-statistics 1-nearest-neighbour on the validation
    split (:func:`framework.tasks.baselines.sequence_baselines`)."""
    from framework.tasks.baselines import sequence_baselines

    return sequence_baselines(corpus)


def meta(corpus: Any) -> dict[str, Any]:
    """The ``task`` field's keys beyond the classes: the marker, feature names and the training
    split's per-feature mean and standard deviation."""
    names = list(corpus.features) or [f"x{i + 1}" for i in range(corpus.dim)]
    return {"inputs": INPUTS, "features": names,
            "feature_mean": [float(v) for v in corpus.mean],
            "feature_std": [float(v) for v in corpus.std]}


def sample_lines(trainer: Any, step: int) -> tuple[str, list[str], list[str]]:
    """Predictions for a few validation sequences (spread over the split), with their labels."""
    corpus = trainer.corpus
    pool, labels = (corpus.val, corpus.val_labels) if corpus.n_val else (corpus.train,
                                                                         corpus.train_labels)
    picks = [int(i) for i in np.linspace(0, len(pool) - 1, min(trainer.rc.train.num_samples,
                                                               len(pool)))]
    task_meta = {**meta(corpus), "classes": list(corpus.classes)}
    rows = predict(trainer.model, task_meta, [pool[i] for i in picks], 1)
    header = f"step {step}: smoothed loss {trainer.smooth_loss:.4f}"
    shown = [f"#{i + 1} ({len(pool[i])} steps, {corpus.classes[labels[i]]}) -> {top[0][0]} "
             f"({top[0][1]:.2f})" for i, top in zip(picks, rows, strict=True)]
    return header, shown, [f"--- predictions at {header}"] + [f"  {s}" for s in shown]


# -- checkpoints -----------------------------------------------------------------------------
def read_meta(fields: Any, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The sequence keys of an untrusted ``task`` field, validated (none for a text classifier):
    bounded lists of finite numbers, one per feature, positive standard deviations, names."""
    f = fields
    if "inputs" not in raw:
        return {}  # a text classifier
    if raw["inputs"] != INPUTS:
        raise f.fail("task.inputs", f"{INPUTS!r} (or absent, for texts)", raw["inputs"])
    mean, std, names = raw.get("feature_mean"), raw.get("feature_std"), raw.get("features")
    for key, values in (("feature_mean", mean), ("feature_std", std)):
        if (not isinstance(values, list) or not 1 <= len(values) <= MAX_FEATURES or not all(
                type(v) in (int, float) and math.isfinite(v) for v in values)):
            raise f.fail(f"task.{key}", f"a list of 1 to {MAX_FEATURES} finite numbers", values)
    if len(std) != len(mean) or not all(v > 0 for v in std):
        raise f.fail("task.feature_std", "positive numbers, one per feature", std)
    if (not isinstance(names, list) or len(names) != len(mean)
            or not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names)):
        raise f.fail("task.features", "one name per feature", names)
    return {"inputs": INPUTS, "features": list(names), "feature_mean": [float(v) for v in mean],
            "feature_std": [float(v) for v in std]}


def model_from_meta(spec: Any, options: Mapping[str, Any]) -> Any:
    """The classifier (without parameters) a validated ``task`` field describes."""
    from framework.nn.models.many_to_one import SequenceClassifier

    task = spec.task_meta
    return SequenceClassifier(spec.cell, len(task["feature_mean"]), len(task["classes"]),
                              **options, ids=False, bidirectional=task["bidirectional"])


# -- using a trained model -------------------------------------------------------------------
def _too_long(where: str, steps: int) -> DataError:
    return DataError(f"{where} has {steps:,} time steps, more than the {MAX_STEPS:,} this model "
                     f"classifies at once; shorten it")


def check_request(value: Any, where: str, task_meta: Mapping[str, Any]) -> np.ndarray:
    """A sequence to classify as (timesteps, D) float64 in original units: the model's feature
    count, finite values, 1 to :data:`MAX_STEPS` steps; anything else is one line.  A list is
    measured before it is converted."""
    dim = len(task_meta["feature_mean"])
    empty = DataError(f"{where} is empty; give at least one time step of {dim} values")
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = value.tolist()  # rows of a served request may arrive as arrays
    if isinstance(value, (list, tuple)):
        if not value:
            raise empty
        if len(value) > MAX_STEPS:
            raise _too_long(where, len(value))
        widths = {len(r) if isinstance(r, (list, tuple, np.ndarray)) else -1 for r in value}
        if len(widths) > 1 or -1 in widths:
            raise DataError(f"{where} must be a list of time steps, each a list of {dim} "
                            f"numbers")
    elif isinstance(value, np.ndarray) and value.size == 0:
        raise empty
    x = check_sequence(value, where, dim)
    if len(x) > MAX_STEPS:
        raise _too_long(where, len(x))
    return x


def _batches(seqs: Sequence[np.ndarray]) -> Iterator[list[int]]:
    """Indices of ``seqs`` in groups of similar length whose padded batch stays within
    :data:`BATCH_VALUES` cells (a single longer sequence is a batch of its own)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    group: list[int] = []
    for i in order:
        cells = len(seqs[i]) * (len(group) + 1) * seqs[i].shape[1]
        if group and cells > BATCH_VALUES:
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def predict(model: Any, task_meta: Mapping[str, Any], seqs: Sequence[np.ndarray],
            k: int) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) per sequence (checked, original units): each is standardised
    with the saved training statistics, then classified in length-sorted batches."""
    from framework.data.feeds.sequences import pad_sequences
    from framework.memory import check_buffers, forward_bytes
    from framework.tasks.metrics import top_classes

    mean = np.asarray(task_meta["feature_mean"], dtype=np.float64)
    std = np.asarray(task_meta["feature_std"], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled64 = [(s - mean) / std for s in seqs]
    limit = float(np.finfo(model.dtype).max)
    for i, s in enumerate(scaled64):
        far = float(np.max(np.abs(s)))
        if not far <= limit:  # the cast below would give infinities
            raise DataError(f"sequence {i + 1} has values {far:.3g} standard deviations from "
                            f"the training data's mean, more than a {np.dtype(model.dtype).name} "
                            f"model holds; pass values in the units the model was trained on")
    scaled = [s.astype(model.dtype) for s in scaled64]
    classes = task_meta["classes"]
    probs = np.zeros((len(seqs), len(classes)))
    for group in _batches(scaled):
        steps = max(len(scaled[i]) for i in group)  # padded to the longest of the group
        check_buffers(f"classifying {len(group):,} sequences",
                      forward_bytes(model, len(group), steps),
                      f"{len(group):,} sequences padded to {steps:,} steps",
                      "pass fewer or shorter sequences")
        inputs, lengths = pad_sequences([scaled[i] for i in group], model.dtype)
        probs[group] = model.predict_proba(inputs, lengths)
    return [top_classes(row, classes, k) for row in probs]


def command_sequences(value: Any, task_meta: Mapping[str, Any]) -> list[tuple[str, np.ndarray]]:
    """``sequence=<file>`` (or a list of files) of ``framework.predict``: (name, sequence) per
    sequence, every file read (:func:`~framework.data.files.readers.read_sequence_file`) and
    every sequence checked."""
    from framework.data.files.readers import read_sequence_file

    if value is None:
        raise ConfigError("this classifier reads vector sequences: pass sequence=<file of frames, "
                          "one time step per line> (or sequence=[file,file])")
    out: list[tuple[str, np.ndarray]] = []
    dim = len(task_meta["feature_mean"])
    for name in requests.command_texts(value):
        path = Path(name).expanduser()
        if not path.exists():
            raise ConfigError(f"sequence file {path} does not exist; fix sequence=")
        seqs = read_sequence_file(path, dim)
        for i, seq in enumerate(seqs, start=1):
            label = f"{name} #{i}" if len(seqs) > 1 else name
            out.append((label, check_request(seq, label, task_meta)))
            if len(out) > requests.MAX_TEXTS:
                raise ConfigError(f"pass at most {requests.MAX_TEXTS} sequences at once")
    return out


def served_sequences(frame: Any, task_meta: Mapping[str, Any]) -> list[np.ndarray]:
    """The ``sequence`` column of a served request (each cell a list of time steps, each a list
    of numbers, or that list as JSON text), checked and bounded."""
    if COLUMN not in frame.columns:
        raise RnnlabError(f"this classifier reads vector sequences: its input needs a "
                          f"'{COLUMN}' column (a list of time steps, each a list of "
                          f"{len(task_meta['feature_mean'])} numbers)")
    cells = list(frame[COLUMN])  # the row count is bounded by the served model beforehand
    out, total = [], 0
    for row, cell in enumerate(cells, start=1):
        where = f"sequence of row {row}"
        if isinstance(cell, str):
            if len(cell) > MAX_JSON_CHARS:
                raise RnnlabError(f"{where} is {len(cell):,} characters of JSON, more than the "
                                  f"{MAX_JSON_CHARS:,} a request may send")
            try:
                cell = json.loads(cell)
            except (ValueError, RecursionError):
                raise RnnlabError(f"{where} is text but not a JSON list of time steps") from None
        if cell is None or requests.missing(cell):
            raise RnnlabError(f"{where} is empty; give a list of time steps")
        seq = check_request(cell, where, task_meta)
        total += seq.size
        if total > MAX_REQUEST_VALUES:
            raise RnnlabError(f"a request may hold at most {MAX_REQUEST_VALUES:,} values in all; "
                              f"send fewer or shorter sequences")
        out.append(seq)
    return out


def input_example(task_meta: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Three time steps at the training mean: a request every model of these features takes."""
    frame = [round(float(v), 6) for v in task_meta["feature_mean"]]
    return {COLUMN: [json.dumps([frame] * 3)]}


def signature() -> Any:
    """``sequence`` (a list of lists of numbers, or that as JSON text) in, strings out."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec(AnyType(), COLUMN)]),
                          outputs=Schema([ColSpec("string")]))


__all__ = ["BATCH_VALUES", "COLUMN", "INPUTS", "MAX_JSON_CHARS", "MAX_REQUEST_VALUES",
           "MAX_STEPS", "META_FIELDS", "baselines", "check_request",
           "command_sequences", "input_example", "make_feed", "meta", "model_from_meta",
           "predict", "read_meta", "reads_sequences", "sample_lines", "served_sequences",
           "signature"]
