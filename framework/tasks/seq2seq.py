"""The ``seq2seq`` task: an encoder, an attention and a decoder translate a source into a target.

The model is :class:`~framework.nn.models.seq2seq.Seq2Seq`.  Its encoder and decoder are cells
of the registry, each chosen on its own::

    python -m framework task=seq2seq dataset=dates cell=lstm model.bidirectional=true \\
        task.encoder.cell=gru task.decoder.cell=lstm task.decoder.hidden_size=64 \\
        task.attention=dot

``task.encoder.*`` and ``task.decoder.*`` (``cell``, ``hidden_size``, ``num_layers``) default to
null, which means the ``cell`` group's choice (with its options, e.g. ``cell.forget_bias``),
``cell.hidden_size`` and ``model.num_layers``; ``model.bidirectional`` makes the encoder read each
source both ways, ``model.dropout`` applies to both stacks.  ``task.attention`` is a plugin of the
ATTENTIONS registry (``additive`` with ``task.attention_units``, ``dot`` with
``task.attention_general``, ``none``).

Training is teacher-forced with the loss per target token.  Every eval reports ``val_loss``
(nats per target token, the end symbol included), ``val_token_accuracy`` (teacher-forced argmax)
and ``val_exact_match`` (the whole target right when the held-out sources are decoded greedily);
samples are a few held-out sources and their translations; the run ends with attention heat maps
of a few held-out sources.  The checkpoint keeps the source vocabulary (its ``vocab``), the target
vocabulary and the longest source and target of the training data (``task`` field).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import ConfigError, DataError, RnnlabError
from framework.registry import TASKS
from framework.tasks import requests
from framework.tasks.base import Task

OBJECTIVES = {"val_loss": "minimize", "val_token_accuracy": "maximize",
              "val_exact_match": "maximize"}
MAX_SIZE = 1 << 20  # the largest hidden size, embedding or attention width an option may ask
MAX_LAYERS = 1024
MAX_SOURCE_CHARS = requests.MAX_TEXT_CHARS  # the longest source a checkpoint may claim
ATTENTION_MAPS = 4  # held-out sources drawn as attention heat maps at the end of training


def _check_size(value: int | None, name: str, hi: int) -> None:
    if value is not None and (isinstance(value, bool) or not 1 <= value <= hi):
        raise ValueError(f"{name} must be null or in [1, {hi}], got {value}")


@dataclass
class EncoderOptions:
    cell: str | None = None  # null: the cell group's cell (cell=...) and its options
    hidden_size: int | None = None  # null: cell.hidden_size
    num_layers: int | None = None  # null: model.num_layers

    def __post_init__(self) -> None:
        _check_size(self.hidden_size, "encoder.hidden_size", MAX_SIZE)
        _check_size(self.num_layers, "encoder.num_layers", MAX_LAYERS)


@dataclass
class DecoderOptions:
    cell: str | None = None  # null: the cell group's cell (cell=...) and its options
    hidden_size: int | None = None  # null: cell.hidden_size
    num_layers: int | None = None  # null: model.num_layers
    embed_size: int | None = None  # null: the previous target token as a one-hot row

    def __post_init__(self) -> None:
        _check_size(self.hidden_size, "decoder.hidden_size", MAX_SIZE)
        _check_size(self.num_layers, "decoder.num_layers", MAX_LAYERS)
        _check_size(self.embed_size, "decoder.embed_size", MAX_SIZE)


@dataclass
class Seq2SeqConfig:
    name: str = "seq2seq"
    encoder: EncoderOptions = field(default_factory=EncoderOptions)
    decoder: DecoderOptions = field(default_factory=DecoderOptions)
    attention: str = "additive"  # additive | dot | none (or any ATTENTIONS plugin)
    attention_units: int = 10  # additive: width of the tanh layer (the course's 10)
    attention_general: bool = False  # dot: Luong's general score (any encoder/decoder sizes)
    objective: str = "val_exact_match"  # what a sweep optimises and best.npz keeps

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                             f"got {self.objective!r}")
        _check_size(self.attention_units, "attention_units", MAX_SIZE)
        from framework.registry import ATTENTIONS, CELLS

        # The names are checked with the rest of the config, before any data is read.
        for key, value, registry in (("encoder.cell", self.encoder.cell, CELLS),
                                     ("decoder.cell", self.decoder.cell, CELLS),
                                     ("attention", self.attention, ATTENTIONS)):
            if value is not None and value not in registry.names():
                raise ValueError(f"{key}: {registry.unknown_message(value)}")


def attention_node(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ATTENTIONS config node of the task options."""
    name = str(options.get("attention") or "additive")
    if name == "additive":
        return {"name": name, "units": int(options.get("attention_units") or 10)}
    if name == "dot":
        return {"name": name, "general": bool(options.get("attention_general"))}
    return {"name": name}


def model_kwargs(options: Mapping[str, Any], *, cell: str, cell_options: Mapping[str, Any],
                 hidden_size: int, num_layers: int, bidirectional: bool) -> dict[str, Any]:
    """Seq2Seq's keyword arguments from the task options and the cell group's choices (what a
    null ``task.encoder.*``/``task.decoder.*`` option stands for)."""
    out: dict[str, Any] = {}
    for side in ("encoder", "decoder"):
        opts = dict(options.get(side) or {})
        name = str(opts.get("cell") or cell)
        out[f"{side}_cell"] = name
        out[f"{side}_hidden"] = int(opts.get("hidden_size") or hidden_size)
        out[f"{side}_layers"] = int(opts.get("num_layers") or num_layers)
        # The cell group's options (cell.forget_bias, ...) belong to its cell only.
        out[f"{side}_options"] = dict(cell_options) if name == cell else None
    embed = (options.get("decoder") or {}).get("embed_size")
    out["embed_size"] = None if embed is None else int(embed)
    out["bidirectional"] = bool(bidirectional)
    out["attention"] = attention_node(options)
    return out


def target_vocab(task_meta: Mapping[str, Any]) -> Any:
    """The target vocabulary of a checkpoint's validated ``task`` field."""
    from framework.data.vocab import Vocab

    return Vocab.from_json(task_meta["target_vocab"])


@TASKS.register("seq2seq", schema=Seq2SeqConfig)
class Seq2SeqTask(Task):
    """Source text in, target text out: encoder, attention, decoder (module docstring)."""

    name = "seq2seq"
    corpus_kinds = ("parallel",)
    unit = "tokens"  # target tokens, the end symbols included
    bidirectional = True  # the encoder reads the whole source before the decoder writes
    compare_metrics = ("val_exact_match", "val_token_accuracy", "val_loss")
    objectives = OBJECTIVES
    noun = "sequence to sequence model"
    key_params = ("task.encoder.cell", "task.decoder.cell", "task.attention", "cell.hidden_size",
                  "model.bidirectional", "dataset.name", "optimizer.lr", "train.steps", "seed")
    input_columns = ("text", "decoder", "width", "length_penalty")
    meta_fields = ("target_vocab", "max_source_length", "max_target_length")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.max_target_length = 1  # set from the corpus (training) or the checkpoint

    # -- set-up ----------------------------------------------------------------------------
    def check(self, rc: Any, corpus: Any) -> None:
        super().check(rc, corpus)
        if rc.train.loss != "mean":
            raise ConfigError("task=seq2seq reports the loss per target token; set "
                              "train.loss=mean")

    def initial_loss(self, rc: Any, corpus: Any) -> float:
        return math.log(corpus.tgt_vocab.size)

    def build_model(self, rc: Any, corpus: Any) -> Any:
        from framework.nn.models.seq2seq import Seq2Seq

        self.max_target_length = corpus.max_target_length
        cell_options = rc.options("cell")
        hidden_size, init = cell_options.pop("hidden_size"), cell_options.pop("init")
        kwargs = model_kwargs(rc.options("task"), cell=rc.cell.name, cell_options=cell_options,
                              hidden_size=hidden_size, num_layers=rc.model.num_layers,
                              bidirectional=rc.model.bidirectional)
        return Seq2Seq(corpus.src_vocab.size, corpus.tgt_vocab.size, dropout=rc.model.dropout,
                       init=init, dtype=rc.dtype, **kwargs)

    def training_memory(self, rc: Any, corpus: Any,
                        feed_kind: str) -> tuple[int, int, tuple[str, ...]]:
        """The encoder's caches over the longest source, the decoder's over the longest target
        (its layers, input token, context and logits with their gradient at every step) and
        the attention's (the tanh layer over every source position at every decoder step)."""
        from framework.memory import model_values
        from framework.tasks.translation import attention_units, step_values

        model = self.shape_model(rc, corpus)
        batch = rc.train.batch_size
        source, target = corpus.max_source_length, corpus.max_target_length + 1
        per_source = step_values(model.encoder.stacks) + model.encoder.feature_size
        per_target = (step_values([model.decoder]) + model.token_size
                      + model.attention.context_size + 2 * model.tgt_vocab_size
                      + source * (1 + attention_units(model.attention)))
        values = batch * (source * per_source + target * per_target)
        return (model_values(model), values * model.dtype.itemsize,
                ("cell.hidden_size", "task.encoder.hidden_size", "task.decoder.hidden_size",
                 "task.attention_units", "model.num_layers", "train.batch_size"))

    def make_feed(self, rc: Any, corpus: Any) -> Any:
        from framework.registry import FEEDS

        return FEEDS.build({"name": "parallel"}, corpus=corpus, batch_size=rc.train.batch_size,
                           seed=rc.seed)

    # -- training --------------------------------------------------------------------------
    def loss_and_grads(self, model: Any, batch: Any, state: Any, *, rc: Any,
                       dropout_rng: Any) -> tuple[float, float, dict, Any]:
        loss_sum, count, grads = model.loss_and_grads(batch, reduction="mean",
                                                      dropout_rng=dropout_rng)
        return loss_sum, count, grads, None

    def decode_held_out(self, model: Any, feed: Any, rc: Any,
                        decoder: Any = None) -> tuple[list[list[int]], list[Any]]:
        """(reference ids, hypotheses) of the held-out pairs (the first ``train.eval_batches``
        batches of them when set), decoded greedily unless ``decoder`` says otherwise."""
        from framework.tasks.translation import build_decoder, translate

        pairs = feed.val_pairs
        if rc.train.eval_batches:
            pairs = pairs[: rc.train.eval_batches * feed.batch_size]
        if not pairs:
            return [], []
        decoder = decoder if decoder is not None else build_decoder(None, model.tgt_vocab_size)
        hyps = translate(model, [s for s, _ in pairs], decoder,
                         max_length=self.max_target_length + 1, eos_id=feed.end_id)
        return [t.tolist() for _, t in pairs], hyps

    def evaluate(self, model: Any, feed: Any, rc: Any) -> dict[str, float]:
        total, count, right = 0.0, 0, 0
        for index, batch in enumerate(feed.val_batches()):
            if rc.train.eval_batches and index >= rc.train.eval_batches:
                break
            loss_sum, n, correct = model.evaluate(batch)
            total += loss_sum
            count += n
            right += correct
        if not count:
            return {}
        refs, hyps = self.decode_held_out(model, feed, rc)
        exact = sum(h.ids == r for h, r in zip(hyps, refs, strict=True)) / len(refs)
        return {"val_loss": total / count, "val_token_accuracy": right / count,
                "val_exact_match": exact}

    def sample_lines(self, trainer: Any, step: int) -> tuple[str, list[str], list[str]]:
        from framework.tasks.translation import build_decoder, translate

        corpus = trainer.corpus
        pool = corpus.val_pairs or corpus.train_pairs
        encoded = corpus.val or corpus.train
        picks = np.linspace(0, len(pool) - 1, min(trainer.rc.train.num_samples, len(pool)))
        chosen = [int(i) for i in picks]
        hyps = translate(trainer.model, [encoded[i][0] for i in chosen],
                         build_decoder(None, corpus.tgt_vocab.size),
                         max_length=self.max_target_length + 1, eos_id=corpus.tgt_vocab.eos_id)
        shown = []
        for i, hyp in zip(chosen, hyps, strict=True):
            source, want = pool[i]
            got = corpus.tgt_vocab.decode(hyp.ids)
            shown.append(f"{source} -> {got}" + ("" if got == want else f"  (want {want})"))
        header = f"step {step}: smoothed loss {trainer.smooth_loss:.4f}"
        return header, shown, [f"--- translations at {header}"] + [f"  {s}" for s in shown]

    def final_artifacts(self, trainer: Any, out_dir: Path) -> list[Path]:
        from framework.tasks.translation import greedy_attention, save_attention_png

        corpus = trainer.corpus
        pool, encoded = corpus.val_pairs, corpus.val
        if not pool:
            return []
        vocab = corpus.tgt_vocab
        paths = []
        picks = np.linspace(0, len(pool) - 1, min(ATTENTION_MAPS, len(pool)))
        for k, i in enumerate(int(j) for j in picks):
            source, want = pool[i]
            ids, weights = greedy_attention(trainer.model, encoded[i][0],
                                            max_length=self.max_target_length + 1,
                                            eos_id=vocab.eos_id)
            got = vocab.decode([t for t in ids if t != vocab.eos_id])
            title = f"{source} -> {got}" + ("" if got == want else f" (want {want})")
            paths.append(save_attention_png(weights, source, vocab.decode_symbols(ids),
                                            out_dir / f"attention_{k + 1}.png", title))
        return paths

    def throughput_unit(self, vocab: Any = None) -> str:
        return "target tokens"

    def summary(self, metrics: dict[str, float], vocab: Any = None) -> str:
        return (f"val loss {metrics.get('val_loss', math.nan):.4f} nats/token, token accuracy "
                f"{metrics.get('val_token_accuracy', math.nan):.4f}, exact match "
                f"{metrics.get('val_exact_match', math.nan):.4f}")

    def meta(self, corpus: Any) -> dict[str, Any]:
        return {"target_vocab": corpus.tgt_vocab.to_json(),
                "max_source_length": int(corpus.max_source_length),
                "max_target_length": int(corpus.max_target_length)}

    def describe_data(self, rc: Any, corpus: Any = None) -> str:
        n = getattr(corpus, "n_train", None)
        return f"{rc.dataset.name} ({n:,} pairs)" if n else str(rc.dataset.name)

    def tags(self, rc: Any) -> dict[str, str]:
        options = rc.options("task")
        cells = [str((options.get(side) or {}).get("cell") or rc.cell.name)
                 for side in ("encoder", "decoder")]
        return {"task": self.name, "encoder": cells[0], "decoder": cells[1],
                "attention": str(options.get("attention"))}

    # -- checkpoints -----------------------------------------------------------------------
    @classmethod
    def read_meta(cls, fields: Any, raw: Any, options: Any) -> dict[str, Any]:
        from framework.data.vocab import Vocab
        from framework.nn.generation import MAX_LENGTH

        try:
            vocab = Vocab.from_json(raw.get("target_vocab"))
        except (RnnlabError, RecursionError, TypeError, ValueError) as exc:
            raise fields.fail("task.target_vocab", f"a target vocabulary ({exc})",
                              raw.get("target_vocab")) from None
        if vocab.eos_id is None:
            raise fields.fail("task.target_vocab", "a target vocabulary with an end symbol",
                              raw.get("target_vocab"))
        return {"target_vocab": raw.get("target_vocab"),
                "max_source_length": fields.integer(raw.get("max_source_length"),
                                                    "task.max_source_length", 1,
                                                    MAX_SOURCE_CHARS),
                "max_target_length": fields.integer(raw.get("max_target_length"),
                                                    "task.max_target_length", 1,
                                                    MAX_LENGTH - 1)}

    @classmethod
    def model_from_meta(cls, spec: Any, vocab: Any) -> Any:
        from framework.nn.models.seq2seq import Seq2Seq

        meta = spec.task_meta
        kwargs = model_kwargs(meta.get("options") or {}, cell=spec.cell_name,
                              cell_options=spec.cell_options, hidden_size=spec.hidden_size,
                              num_layers=spec.num_layers, bidirectional=meta["bidirectional"])
        return Seq2Seq(vocab.size, target_vocab(meta).size, dropout=spec.dropout,
                       init=spec.init, dtype=spec.dtype.name, **kwargs)

    # -- using a trained model -------------------------------------------------------------
    def translate_texts(self, model: Any, vocab: Any, task_meta: Mapping[str, Any],
                        texts: list[str], decoder: Any = None,
                        seed: int | None = None) -> tuple[list[str], list[float]]:
        """(translations, their total log-probabilities); ``decoder`` is a built DECODERS
        plugin or a config node (None: greedy).  A text with a character the training sources
        never held is a one-line DataError naming it."""
        from framework.tasks.translation import build_decoder, encode_texts, translate

        tgt = target_vocab(task_meta)
        if decoder is None or isinstance(decoder, Mapping | str):
            decoder = build_decoder(decoder, tgt.size)
        else:
            decoder.check_vocabulary(tgt.size)
        sources = encode_texts(vocab, texts, int(task_meta["max_source_length"]))
        hyps = translate(model, sources, decoder,
                         max_length=int(task_meta["max_target_length"]) + 1, eos_id=tgt.eos_id,
                         rng=np.random.default_rng(seed))
        return [tgt.decode(h.ids) for h in hyps], [h.score for h in hyps]

    def predict(self, model: Any, vocab: Any, meta: Any, cfg: Any) -> list[str]:
        """The translation of each ``text`` (one line each, in order); ``score=true`` adds a tab
        and its total log-probability.  ``decoder=`` (greedy by default) chooses the search."""
        from framework.nn.decoding import build_decoder

        texts = requests.text_request(cfg, "to translate")
        task_meta = meta.model.task_meta
        decoder = build_decoder(cfg.get("decoder") or "greedy",
                                vocab_size=target_vocab(task_meta).size,
                                sampler=cfg.get("sampler") or {"name": "categorical"})
        outputs, scores = self.translate_texts(model, vocab, task_meta, texts, decoder,
                                               cfg.get("seed"))
        if cfg.get("score"):
            return [f"{out}\t{score:.4f}" for out, score in zip(outputs, scores, strict=True)]
        return outputs

    def signature(self) -> Any:
        """``text`` and the optional decoding columns in; ``translation`` (string) and
        ``score`` (double) out."""
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import AnyType, ColSpec, Schema

        # Numbers are typed "any" (checked in serve), as the language model's are.
        return ModelSignature(inputs=Schema([ColSpec("string", "text"),
                                             ColSpec("string", "decoder", required=False),
                                             *(ColSpec(AnyType(), name, required=False)
                                               for name in ("width", "length_penalty"))]),
                              outputs=Schema([ColSpec("string", "translation"),
                                              ColSpec("double", "score")]))

    def input_example(self, meta: Any, vocab: Any) -> dict[str, list[Any]]:
        letters = requests.example_letters(vocab) or "a"
        return {"text": [letters[: int(meta.model.task_meta["max_source_length"])]]}

    def serve(self, served: Any, frame: Any) -> Any:
        """A DataFrame of ``translation`` and ``score`` (total log-probability, float64), one
        row per ``text``; a row's optional ``decoder`` (greedy by default, ``beam``, ``sample``),
        ``width`` and ``length_penalty`` choose its search.  Rows that ask for the same search
        are decoded together."""
        import pandas as pd

        from framework.tasks.translation import served_decoder_node

        texts = requests.served_texts(frame)
        task_meta = served.meta.model.task_meta
        groups: dict[tuple, list[int]] = {}
        nodes: dict[tuple, dict[str, Any]] = {}
        for index, row in enumerate(frame.to_dict(orient="records")):
            node = served_decoder_node(row)
            key = tuple(sorted(node.items()))
            nodes[key] = node
            groups.setdefault(key, []).append(index)
        outputs: list[str] = [""] * len(texts)
        scores = np.zeros(len(texts), dtype=np.float64)
        try:
            for key, rows in groups.items():
                decoder = build_served_decoder(nodes[key], served, task_meta)
                out, score = self.translate_texts(served.model, served.vocab, task_meta,
                                                     [texts[i] for i in rows], decoder)
                for i, o, s in zip(rows, out, score, strict=True):
                    outputs[i], scores[i] = o, s
        except DataError as exc:
            raise RnnlabError(str(exc)) from None
        return pd.DataFrame({"translation": outputs, "score": scores})


def build_served_decoder(node: Mapping[str, Any], served: Any, task_meta: Mapping[str, Any]) -> Any:
    """The decoder of a served request's ``node``; ``sample`` draws with the checkpoint's
    sampler."""
    from framework.nn.decoding import build_decoder

    return build_decoder(dict(node), sampler=getattr(served, "sampler", None),
                         vocab_size=target_vocab(task_meta).size)


__all__ = ["DecoderOptions", "EncoderOptions", "Seq2SeqConfig", "Seq2SeqTask", "attention_node",
           "build_served_decoder", "model_kwargs", "target_vocab"]
