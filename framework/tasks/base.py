"""The task plugin contract: what differs between next-token modelling, classification and
forecasting, so that the trainer, checkpoints and commands are written once for all of them.

A task is registered in ``TASKS`` with its schema (``task.<key>=`` options) and owns:

* which corpora it accepts (``corpus_kinds``) and the combinations it refuses (:meth:`check`);
* the model on top of the cell stack (:meth:`build_model`) and the feed (:meth:`make_feed`);
* the loss and gradients of one batch (:meth:`loss_and_grads`);
* evaluation metrics (:meth:`evaluate`); the ones it reports at every eval that a sweep may
  optimise, each with its natural direction (``objectives``; :meth:`objective_direction` also
  takes their ``best_`` variants, the best eval so far);
* what "sample" means during training (:meth:`sample_lines`) and the final artifacts;
* what it stores in a checkpoint beyond the parameters (:meth:`meta`), how that field is read
  back from an untrusted file (:meth:`read_meta`) and how the model is rebuilt from it
  (:meth:`model_from_meta`);
* how a trained model is used: ``python -m framework.predict`` (:meth:`predict`), text
  generation (:meth:`generate`), the served pyfunc model's columns, signature, input example and
  answer (:meth:`signature`, :meth:`input_example`, :meth:`serve`);
* how its runs are shown: the run description (``noun``, :meth:`describe_data`), the tags
  (:meth:`tags`), the MLflow UI's key columns (``key_params``) and the compare metrics.

Nothing outside ``framework/tasks/`` names a task: code that differs by task asks the task.
Cells never know which task they serve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from framework.errors import ConfigError, DataError

MAX_WINDOW = 1 << 31  # the longest window (past values, generation context) a checkpoint may claim
BEST_PREFIX = "best_"  # best_<metric>: the best value of <metric> over the evals so far
# The config's default task, and the task of runs and checkpoints written before tasks existed
# (they have no ``task`` tag or metadata field).
DEFAULT_TASK = "lm"
# The generic keys of a checkpoint's ``task`` field; a task adds its own (``meta_fields``).
META_KEYS = ("name", "options", "bidirectional")


def tasks_reading(kind: str) -> list[str]:
    """The registered tasks that read corpora of ``kind``, in registration order."""
    from framework.registry import TASKS

    return [name for name in TASKS.names() if kind in TASKS.get(name).corpus_kinds]


def task_from_meta(task_meta: Mapping[str, Any]) -> Task:
    """The task of a checkpoint's validated ``task`` field, built from its saved options."""
    from framework.registry import TASKS

    name = str(task_meta.get("name") or DEFAULT_TASK)
    task = TASKS.get(name)(TASKS.validate({"name": name, **dict(task_meta.get("options") or {})}))
    return task.for_model(task_meta)


def spec_options(spec: Any) -> dict[str, Any]:
    """The model options every task's model takes, from a checkpoint's model spec."""
    return dict(hidden_size=spec.hidden_size, num_layers=spec.num_layers, dropout=spec.dropout,
                init=spec.init, dtype=spec.dtype.name)


def training_batch(rc: Any, corpus: Any, feed_kind: str) -> tuple[int, int]:
    """``(examples, time steps)`` of the largest training batch of ``feed_kind``: a batch of
    examples is as long as the longest one (a name with its start symbol), a stream's or
    window's as ``train.seq_len``."""
    if feed_kind in ("names", "example", "labelled", "sequences"):
        longest = max((len(x) for x in corpus.train), default=0)
        start = 1 if feed_kind in ("names", "example") else 0
        return (1 if feed_kind == "example" else rc.train.batch_size), longest + start
    return rc.train.batch_size, rc.train.seq_len


def task_of_run(tags: Mapping[str, str]) -> str:
    """The task name of an MLflow run from its ``task`` tag (runs before tasks have none)."""
    return str(tags.get("task") or DEFAULT_TASK)


class Task:
    """Base of every task plugin; the registry sets ``name`` and passes the validated schema."""

    name: ClassVar[str] = "task"
    corpus_kinds: ClassVar[tuple[str, ...]] = ()
    bidirectional: ClassVar[bool] = False  # may the model read each sequence in both directions?
    unit: ClassVar[str] = "tokens"  # what the throughput counts
    # Final metrics `framework.compare` shows; runs are ranked by the first.
    compare_metrics: ClassVar[tuple[str, ...]] = ("val_loss",)
    # Metrics reported at every eval that a sweep may optimise, and which way each is better
    # ("minimize" or "maximize").
    objectives: ClassVar[Mapping[str, str]] = {"val_loss": "minimize"}
    # The run description's noun: "LSTM (1x128) <noun> on dinos, ...".
    noun: ClassVar[str] = "model"
    # The params that tell this task's runs apart at a glance (the MLflow UI's key columns).
    key_params: ClassVar[tuple[str, ...]] = ("cell.name", "cell.hidden_size", "model.num_layers",
                                             "dataset.name", "optimizer.lr", "train.steps",
                                             "seed")
    # The served model's input columns; the first is the one a bare string or list fills.
    input_columns: ClassVar[tuple[str, ...]] = ("text",)
    # Does the model carry its hidden state across batches (resume then needs it)?
    carries_state: ClassVar[bool] = False
    # Does the model read token ids of a vocabulary (saved with the checkpoint)?
    has_vocab: ClassVar[bool] = True
    # What ``python -m framework.predict`` answers about: ``text=``, ``sequence=`` or ``history=``.
    predict_input: ClassVar[str] = "text"
    predict_input_required: ClassVar[bool] = True  # False: the model answers without it
    # Does the task re-split its texts with ``tokenizer=`` (when its corpus has a vocabulary)?
    tokenizes: ClassVar[bool] = False
    # Does the task batch its data with the ``train.feed`` plugin (others build their own)?
    reads_train_feed: ClassVar[bool] = False
    # Does ``python -m framework.generate`` generate from its models (:meth:`generate`)?
    generates: ClassVar[bool] = False
    # The task-specific keys of the checkpoint's ``task`` field (what :meth:`meta` writes).
    meta_fields: ClassVar[tuple[str, ...]] = ()
    # Does the head read every step (a language model) or the last one (a classifier)?
    head_reads_every_step: ClassVar[bool] = True
    # The task's own settings a config that does not fit in memory may lower.
    memory_knobs: ClassVar[tuple[str, ...]] = ("train.seq_len",)

    def __init__(self, config: Any = None) -> None:
        self.config = config
        # Console lines about the model built (pretrained vectors' coverage), shown once
        # before training.
        self.notes: list[str] = []

    # -- set-up ----------------------------------------------------------------------------
    @property
    def objective(self) -> str:
        """The metric a sweep optimises (returned by the training command)."""
        return getattr(self.config, "objective", None) or "val_loss"

    @property
    def direction(self) -> str:
        """Which way the sweep objective is better: ``minimize`` or ``maximize``."""
        return self.objective_direction(self.objective)

    @classmethod
    def objective_direction(cls, name: str) -> str:
        """The natural direction of ``name``: one of ``objectives`` or ``best_<one of them>``
        (the best eval so far); any other name is a one-line ConfigError listing the choices."""
        metric = name[len(BEST_PREFIX):] if name.startswith(BEST_PREFIX) else name
        if metric not in cls.objectives:
            choices = [*cls.objectives, *(BEST_PREFIX + m for m in cls.objectives)]
            raise ConfigError(f"{name!r} is not a metric task '{cls.name}' reports at every "
                              f"eval; choose one of {', '.join(choices)}")
        return cls.objectives[metric]

    def check(self, rc: Any, corpus: Any) -> None:
        """Refuse a config/dataset combination this task cannot train, in one line."""
        if corpus.kind not in self.corpus_kinds:
            fits = tasks_reading(corpus.kind)
            fix = ("use " + " or ".join(f"task={t}" for t in fits) if fits
                   else "choose another dataset")
            raise ConfigError(
                f"task '{self.name}' needs a dataset of kind {' or '.join(self.corpus_kinds)}, "
                f"but '{corpus.name}' is {corpus.kind}; {fix}")
        from framework.tasks.token_inputs import embedding_size

        tokenizer = getattr(rc, "tokenizer", None)
        if tokenizer is not None and (not self.tokenizes
                                      or getattr(corpus, "vocab", None) is None):
            raise ConfigError(f"tokenizer={tokenizer.name} does not apply to task '{self.name}' "
                              f"on '{corpus.name}' ({corpus.kind}), whose inputs it does not "
                              f"split; drop the tokenizer option")
        feed = getattr(getattr(rc, "train", None), "feed", "auto")
        if feed != "auto" and not self.reads_train_feed:
            raise ConfigError(f"train.feed={feed} does not apply to task '{self.name}', which "
                              f"batches its data its own way; drop train.feed (or use "
                              f"train.feed=auto)")
        embedding = embedding_size(rc)
        if embedding and not self.has_vocab:
            raise ConfigError(f"model.embedding.size={embedding} does not fit task "
                              f"'{self.name}', whose inputs are real values, not token ids; set "
                              f"model.embedding.size=0")
        if rc.model.bidirectional and not self.bidirectional:
            raise ConfigError(
                f"model.bidirectional=true does not fit task '{self.name}': its predictions must "
                f"not read the future; set model.bidirectional=false or use "
                f"{' or '.join(f'task={t}' for t in self.bidirectional_tasks())}")

    @staticmethod
    def bidirectional_tasks() -> list[str]:
        """The registered tasks whose models may read a sequence in both directions."""
        from framework.registry import TASKS

        return [name for name in TASKS.names() if TASKS.get(name).bidirectional]

    def for_model(self, task_meta: Mapping[str, Any]) -> Task:
        """This task as it answers for a saved model with this validated ``task`` field (a task
        whose inputs depend on its data, such as texts or vectors, adapts here)."""
        return self

    def prepare_corpus(self, rc: Any, corpus: Any) -> Any:
        """The corpus as this task reads it (a task on token ids re-encodes it with the run's
        tokenizer); the loaded corpus unchanged by default."""
        return corpus

    def initial_loss(self, rc: Any, corpus: Any) -> float:
        """Where the smoothed training loss starts: the loss of a uniform guess."""
        return math.nan

    def build_model(self, rc: Any, corpus: Any) -> Any:
        raise NotImplementedError

    def make_feed(self, rc: Any, corpus: Any) -> Any:
        raise NotImplementedError

    # -- memory, sized before anything is allocated ------------------------------------------
    def shape_model(self, rc: Any, corpus: Any) -> Any:
        """The model :meth:`build_model` makes, without parameters and without reading anything
        (pretrained vectors): what memory is sized from. :meth:`build_model` by default."""
        return self.build_model(rc, corpus)

    def memory_batch(self, rc: Any, corpus: Any, feed_kind: str) -> tuple[int, int]:
        """``(examples, time steps)`` of the largest training batch (:func:`training_batch`)."""
        return training_batch(rc, corpus, feed_kind)

    def training_memory(self, rc: Any, corpus: Any,
                        feed_kind: str) -> tuple[int, int, tuple[str, ...]]:
        """``(parameters, activation bytes, settings that lower them)`` of one training step,
        before any array exists: the parameters of :meth:`shape_model`, and the forward
        caches of its batch (:func:`framework.memory.forward_bytes`: its inputs and every
        layer's gates, states and outputs at every step) plus the head's outputs (every step's
        logits and their gradient when the head reads every step)."""
        import numpy as np

        from framework.memory import forward_bytes, model_values

        model = self.shape_model(rc, corpus)
        batch, steps = self.memory_batch(rc, corpus, feed_kind)
        itemsize = np.dtype(rc.dtype).itemsize
        dense = getattr(getattr(model, "head", None), "dense", None)
        outputs = int(getattr(dense, "out_features", 0))
        head = 2 * batch * outputs * (steps if self.head_reads_every_step else 1) * itemsize
        vocab = getattr(corpus, "vocab", None)
        if vocab is not None:  # pretrained vectors are held while the model is built
            from framework.tasks.token_inputs import vectors_bytes

            head += vectors_bytes(rc, vocab)
        return (model_values(model), forward_bytes(model, batch, steps) + head,
                ("cell.hidden_size", "model.num_layers", "train.batch_size", *self.memory_knobs))

    # -- training --------------------------------------------------------------------------
    def zero_state(self, model: Any, feed: Any, rc: Any) -> Any:
        """The state carried between batches (only the language model carries one)."""
        return None

    def loss_and_grads(self, model: Any, batch: Any, state: Any, *, rc: Any,
                       dropout_rng: Any) -> tuple[float, float, dict, Any]:
        """``(loss summed over the batch, its count, gradients, state after the batch)``; the
        gradients are those of the mean loss when ``train.loss=mean``."""
        raise NotImplementedError

    def evaluate(self, model: Any, feed: Any, rc: Any) -> dict[str, float]:
        """Validation metrics, ``val_loss`` among them (empty when there is no validation set)."""
        raise NotImplementedError

    def start_metrics(self, corpus: Any, rc: Any) -> dict[str, float]:
        """Metrics logged once before training (baselines on the same split)."""
        return {}

    def sample_lines(self, trainer: Any, step: int) -> tuple[str, list[str], list[str]]:
        """``(header, sample texts, console lines)`` shown every ``train.sample_every`` steps."""
        return "", [], []

    def final_artifacts(self, trainer: Any, out_dir: Path) -> list[Path]:
        """Files written at the end of training for MLflow (plots, tables)."""
        return []

    def throughput_unit(self, vocab: Any = None) -> str:
        """What the run's throughput counts, for the end-of-run line."""
        return self.unit

    def summary(self, metrics: dict[str, float], vocab: Any = None) -> str:
        """The end-of-run line's description of the final validation metrics."""
        loss = metrics.get("val_loss", math.nan)
        return f"val loss {loss:.4f}"

    def meta(self, corpus: Any) -> dict[str, Any]:
        """What a checkpoint needs beyond parameters to rebuild and use the model: the keys
        ``meta_fields`` names, as JSON values."""
        return {}

    # -- the run as MLflow shows it --------------------------------------------------------
    def describe_data(self, rc: Any, corpus: Any = None) -> str:
        """The data part of the run description ("dinos", "names (18 classes)")."""
        return str(rc.dataset.name)

    def tags(self, rc: Any) -> dict[str, str]:
        """The run's tags that say what it trained."""
        return {"task": self.name}

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint_field(self, rc: Any, corpus: Any) -> dict[str, Any] | None:
        """The checkpoint's ``task`` metadata field: the task's name and options and
        :meth:`meta` (None writes no field: the default task's checkpoints keep the format
        they had before tasks existed)."""
        return {"name": self.name, "options": rc.options("task"),
                "bidirectional": bool(rc.model.bidirectional), **self.meta(corpus)}

    @classmethod
    def read_meta(cls, fields: Any, raw: Mapping[str, Any],
                  options: Mapping[str, Any]) -> dict[str, Any]:
        """The task-specific keys of an untrusted checkpoint's ``task`` field, validated
        (bounded, typed); ``fields`` (:class:`framework.training.checkpoint.fields.Fields`)
        makes each failure a one-line CheckpointError naming the field; ``options`` are the
        field's task options, already validated against the task's schema."""
        return {}

    @classmethod
    def reads_vocab(cls, task_meta: Mapping[str, Any]) -> bool:
        """Does a saved model with this validated ``task`` field read token ids of a vocabulary
        (which its checkpoint must then hold)?"""
        return cls.has_vocab

    @classmethod
    def model_from_meta(cls, spec: Any, vocab: Any) -> Any:
        """The model (without parameters) a checkpoint's validated metadata describes: ``spec``
        is its :class:`~framework.training.checkpoint.metadata.ModelSpec` (``spec.cell`` the
        built cell, ``spec.task_meta`` the validated ``task`` field), ``vocab`` its vocabulary
        (None when the task has none). Its ``param_shapes()`` are what the file must hold."""
        raise NotImplementedError

    # -- using a trained model -------------------------------------------------------------
    def predict(self, model: Any, vocab: Any, meta: Any, cfg: Any) -> list[str]:
        """The lines ``python -m framework.predict`` prints for the request in ``cfg`` (its
        composed config: ``text``, ``history``, ``top_k``, ...; the options every task shares
        already checked by :func:`framework.tasks.requests.command_options`)."""
        raise DataError(f"this checkpoint is a '{self.name}' model, which framework.predict "
                        f"does not answer")

    def generate(self, model: Any, vocab: Any, meta: Any, args: Any, decoder: Any) -> list[Any]:
        """What ``python -m framework.generate`` prints (``args``: its checked options;
        ``decoder``: the built decoding plugin): :class:`~framework.nn.generation.Generated`
        outputs (text, log-probability, finished)."""
        raise DataError(f"this checkpoint is a '{self.name}' model, which does not generate "
                        f"text; use python -m framework.predict")

    def signature(self) -> Any:
        """The served model's MLflow signature: :attr:`input_columns` in, strings out."""
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import ColSpec, Schema

        return ModelSignature(inputs=Schema([ColSpec("string", c) for c in self.input_columns]),
                              outputs=Schema([ColSpec("string")]))

    def input_example(self, meta: Any, vocab: Any) -> dict[str, list[Any]]:
        """A small request saved with the served model (the UI shows it)."""
        return {self.input_columns[0]: ["a"]}

    def serve(self, served: Any, frame: Any) -> list[str]:
        """The served model's answer to a request (a DataFrame with :attr:`input_columns`);
        ``served`` holds ``model``, ``vocab``, ``meta`` and the sampling defaults."""
        raise NotImplementedError


__all__ = ["BEST_PREFIX", "DEFAULT_TASK", "META_KEYS", "Task", "spec_options", "task_from_meta",
           "task_of_run", "tasks_reading", "training_batch"]
