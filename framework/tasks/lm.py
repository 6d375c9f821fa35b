"""The ``lm`` task: next-token prediction with a softmax over the vocabulary at every step.

The model is :class:`~framework.nn.models.language_model.CharRNN` (a cell stack and the output
layer); the feed is chosen by ``train.feed`` (``auto``: one padded name batch per step for a
lines corpus, truncated BPTT with the state carried for a stream); samples are generated text,
and so are ``framework.generate``'s output and the served model's answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.errors import ConfigError, RnnlabError
from framework.registry import TASKS
from framework.tasks import requests
from framework.tasks.base import Task, spec_options


@dataclass
class LMConfig:
    name: str = "lm"


def build_lm(rc: Any, vocab_size: int, embedding: Any = None) -> Any:
    """The language model of a run config (:meth:`LanguageModelTask.model_from_meta` rebuilds
    one from a checkpoint's metadata); ``embedding``: its input table, None for one-hot."""
    from framework.nn.models.language_model import CharRNN

    cell_options = rc.options("cell")
    hidden_size = cell_options.pop("hidden_size")
    init = cell_options.pop("init")
    return CharRNN(cell=rc.cell.name, vocab_size=vocab_size, hidden_size=hidden_size,
                   num_layers=rc.model.num_layers, dropout=rc.model.dropout, init=init,
                   dtype=rc.dtype, cell_options=cell_options, embedding=embedding)


def _start(vocab: Any, meta: Any) -> list[int] | None:
    """What a checkpoint's generation feeds before the prompt (None: the default)."""
    from framework.nn.generation import start_ids

    feed = (meta.config.get("train") or {}).get("feed")
    if feed == "auto":
        feed = "names" if meta.corpus_kind == "lines" else "stream"
    return start_ids(vocab, meta.corpus_kind, feed)


def sample_lines(texts: list[str]) -> list[str]:
    """Samples as console lines: each line indented, samples of several lines separated by a
    blank line, control characters other than tab and line break shown escaped."""
    multi = any("\n" in t for t in texts)
    out: list[str] = []
    for i, text in enumerate(texts):
        shown = "".join(c if c in "\n\t" or c.isprintable() else repr(c)[1:-1] for c in text)
        if multi and i:
            out.append("")
        out += [f"  {line}" for line in shown.split("\n")]
    return out


def _served_decoder(served: Any, row: dict[str, Any]) -> Any:
    """The decoder a served request's row asks for (its ``decoder``, ``width``,
    ``length_penalty`` and ``temperature`` cells); the checkpoint's sampler by default."""
    from framework.nn.decoding import build_decoder
    from framework.registry import SAMPLERS

    node = requests.decoder_node(row, "sample")
    name = node["name"]
    temperature = requests.number(row.get("temperature"))
    if temperature is not None and name != "sample":
        raise RnnlabError(f"temperature is an option of decoder 'sample', not of '{name}'")
    sampler = served.sampler
    if temperature is not None:
        sampler = SAMPLERS.build({"name": "temperature", "temperature": temperature})
    return build_decoder(node, sampler=sampler, vocab_size=served.vocab.size)


@TASKS.register("lm", schema=LMConfig)
class LanguageModelTask(Task):
    """Next-token language model over a lines or stream corpus (characters or other tokens)."""

    name = "lm"
    corpus_kinds = ("lines", "stream")
    memory_knobs = ("train.seq_len", "model.embedding.size")
    unit = "chars"
    compare_metrics = ("val_loss", "bits_per_char")
    objectives = {"val_loss": "minimize", "val_bits_per_char": "minimize"}
    noun = "language model"
    key_params = ("cell.name", "cell.hidden_size", "model.num_layers", "dataset.name",
                  "optimizer.name", "optimizer.lr", "train.steps", "seed")
    input_columns = ("prompt", "num_samples", "length", "temperature", "seed", "decoder", "width",
                     "length_penalty", "score")
    carries_state = True
    meta_fields = ("embedding",)

    def prepare_corpus(self, rc: Any, corpus: Any) -> Any:
        from framework.tasks.token_inputs import tokenize_corpus

        return tokenize_corpus(rc, corpus)

    def initial_loss(self, rc: Any, corpus: Any) -> float:
        tokens = rc.train.smooth_init_tokens
        if tokens is None:
            tokens = 1 if rc.train.loss == "mean" else rc.train.seq_len
        return math.log(corpus.vocab.size) * tokens

    def build_model(self, rc: Any, corpus: Any) -> Any:
        from framework.tasks.token_inputs import build_embedding

        embedding, self._vectors = build_embedding(rc, corpus.vocab)
        if self._vectors is not None:
            self.notes.append(self._vectors.summary())
        return build_lm(rc, corpus.vocab.size, embedding)

    def shape_model(self, rc: Any, corpus: Any) -> Any:
        from framework.tasks.token_inputs import shape_embedding

        return build_lm(rc, corpus.vocab.size, shape_embedding(rc, corpus.vocab))

    def start_metrics(self, corpus: Any, rc: Any) -> dict[str, float]:
        from framework.tasks.token_inputs import coverage_metrics

        return coverage_metrics(getattr(self, "_vectors", None))

    def make_feed(self, rc: Any, corpus: Any) -> Any:
        from framework.registry import FEEDS

        return FEEDS.build(rc.feed, corpus=corpus, batch_size=rc.train.batch_size,
                           seq_len=rc.train.seq_len, seed=rc.seed)

    def zero_state(self, model: Any, feed: Any, rc: Any) -> Any:
        return model.zero_state(feed.batch_size)

    def loss_and_grads(self, model: Any, batch: Any, state: Any, *, rc: Any,
                       dropout_rng: Any) -> tuple[float, float, dict, Any]:
        if batch.reset:
            state = model.zero_state(batch.inputs.shape[1])
        reduction = "mean" if rc.train.loss == "mean" else "sum"
        loss_sum, n, grads, state = model.loss_and_grads(
            batch.inputs, batch.targets, state, reduction=reduction, dropout_rng=dropout_rng)
        return loss_sum, n, grads, state

    def evaluate(self, model: Any, feed: Any, rc: Any) -> dict[str, float]:
        total, count = 0.0, 0
        state = None
        limit = rc.train.eval_batches
        for index, batch in enumerate(feed.val_batches()):
            if limit and index >= limit:
                break
            width = batch.inputs.shape[1]
            if batch.reset or state is None or state[0][0].shape[0] != width:
                state = model.zero_state(width)
            loss_sum, n, state = model.loss(batch.inputs, batch.targets, state)
            total += loss_sum
            count += n
        if not count:
            return {}
        loss = total / count
        return {"val_loss": loss, "val_bits_per_char": loss / math.log(2)}

    def sample_texts(self, trainer: Any) -> list[str]:
        from framework.nn.generation import generate, start_ids

        rc = trainer.rc
        return generate(trainer.model, trainer.vocab, trainer.sampler, prompt="",
                        length=rc.train.sample_length, num_samples=rc.train.num_samples,
                        window=rc.generate.window,
                        rng=np.random.default_rng([rc.seed, trainer.step]),
                        start=start_ids(trainer.vocab, trainer.corpus.kind, trainer.feed.kind))

    def sample_lines(self, trainer: Any, step: int) -> tuple[str, list[str], list[str]]:
        texts = self.sample_texts(trainer)
        if trainer.rc.train.report == "course":
            header = f"Iteration: {step}, Loss: {trainer.smooth_loss:f}"
            names = [t[:1].upper() + t[1:] for t in texts]
            return header, names, [header, "", *names, ""]
        header = f"step {step}: smoothed loss {trainer.smooth_loss:.4f}"
        lines = [f"--- samples at {header}", *sample_lines(texts)]
        # A dataset that can render its samples (music: .mid files and piano rolls) writes them
        # under the run directory; they are logged as MLflow artifacts.
        render = getattr(trainer.dataset, "render_samples", None)
        if render is not None:
            where = f"samples/step_{step:07d}"
            lines = [lines[0], *render(texts, trainer.out_dir / where)]
            trainer.report.artifacts(trainer.out_dir / where, where)
        return header, texts, lines

    def throughput_unit(self, vocab: Any = None) -> str:
        return "chars" if vocab is None or vocab.is_chars else "tokens"

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint_field(self, rc: Any, corpus: Any) -> dict[str, Any] | None:
        from framework.tasks.token_inputs import embedding_field

        # Without an embedding, language-model checkpoints keep the format they had before tasks.
        embedding = embedding_field(rc)
        if embedding is None:
            return None
        return {**super().checkpoint_field(rc, corpus), "embedding": embedding}

    @classmethod
    def read_meta(cls, fields: Any, raw: Any, options: Any) -> dict[str, Any]:
        from framework.tasks.token_inputs import read_embedding_field

        embedding = read_embedding_field(fields, raw)
        return {} if embedding is None else {"embedding": embedding}

    @classmethod
    def model_from_meta(cls, spec: Any, vocab: Any) -> Any:
        from framework.nn.models.language_model import CharRNN
        from framework.tasks.token_inputs import embedding_from_field

        return CharRNN(cell=spec.cell, vocab_size=vocab.size, **spec_options(spec),
                       embedding=embedding_from_field(spec.task_meta, vocab))

    # -- using a trained model -------------------------------------------------------------
    def predict(self, model: Any, vocab: Any, meta: Any, cfg: Any) -> list[str]:
        """Each ``text`` continued by the ``decoder`` (greedy unless chosen): one output per
        text (a sampling decoder draws one), printed as ``framework.generate`` prints it, with
        its log-probability when ``score=true``."""
        from framework.nn.decoding import build_decoder
        from framework.nn.generation import format_generated, generate_scored

        texts = requests.text_request(cfg, "to continue")
        decoder = build_decoder(cfg.get("decoder") or "greedy", vocab_size=vocab.size,
                                sampler=cfg.get("sampler") or {"name": "categorical"})
        length = cfg.get("length")
        length = int(meta.sample_length or requests.DEFAULT_LENGTH) if length is None else \
            requests.positive_int(length, "length")
        seed, score = cfg.get("seed"), cfg.get("score", False)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or not 0 <= seed < 2**63):
            raise ConfigError(f"seed must be null or an integer in [0, 2**63 - 1], got {seed!r}")
        if not isinstance(score, bool):
            raise ConfigError(f"score must be true or false, got {score!r}")
        rng = np.random.default_rng(seed)
        outputs = []
        for text in texts:
            outputs += generate_scored(model, vocab, decoder, prompt=text, length=length,
                                       num_samples=1, window=meta.window, rng=rng,
                                       start=_start(vocab, meta))
        scores = [o.score for o in outputs] if score else None
        return [format_generated([o.text for o in outputs], vocab.eos, scores)]

    def generate(self, model: Any, vocab: Any, meta: Any, args: Any, decoder: Any) -> list[Any]:
        from framework.nn.generation import generate_scored

        window = args.window if args.window is not None else meta.window
        return generate_scored(model, vocab, decoder, prompt=args.prompt, length=args.length,
                               num_samples=args.num_samples, window=window,
                               rng=np.random.default_rng(args.seed), start=_start(vocab, meta))

    def signature(self) -> Any:
        """``prompt`` (a string) and the optional sampling columns, strings out."""
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import AnyType, ColSpec, Schema

        # Numbers are typed "any" (checked in serve): MLflow refuses int64 for a "double"
        # column, and a "long" column turns float64 as soon as one record omits it (NaN).
        inputs = Schema([ColSpec("string", "prompt"),
                         *(ColSpec(AnyType(), name, required=False)
                           for name in self.input_columns[1:])])
        return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("string")]))

    def input_example(self, meta: Any, vocab: Any) -> dict[str, list[Any]]:
        return {"prompt": [requests.example_letters(vocab)], "num_samples": [1], "length": [20],
                "seed": [0]}

    def serve(self, served: Any, frame: Any) -> Any:
        """The outputs of row 0, then those of row 1, ...; each starts with its prompt.

        A row's ``decoder`` (``sample``, the default, ``greedy`` or ``beam`` with ``width`` and
        ``length_penalty``) chooses the ids; ``temperature`` is a sampling option.  When a row
        asks for ``score``, the answer is a table of ``text`` and ``score`` (each output's total
        log-probability, a number) instead of a list of texts.
        """
        import pandas as pd

        from framework.nn.generation import generate_scored

        # The row count and the request's size are checked by the pyfunc model. Every row is
        # checked, and the whole request's work bounded, before anything runs.
        rows, work, scored = [], 0, False
        for row in frame.to_dict(orient="records"):
            prompt = row.get("prompt")
            prompt = "" if requests.missing(prompt) else str(prompt)
            if len(prompt) > requests.MAX_PROMPT:
                raise RnnlabError(f"prompt has {len(prompt):,} characters, more than "
                                  f"{requests.MAX_PROMPT:,}")
            num = requests.int_option(row, "num_samples", 1, 1, requests.MAX_SAMPLES)
            length = requests.int_option(row, "length",
                                         min(served.default_length, requests.MAX_LENGTH), 0,
                                         requests.MAX_LENGTH)
            seed = requests.int_option(row, "seed", None, 0, 2**63 - 1)
            decoder = _served_decoder(served, row)
            scored = scored or requests.flag(row, "score")
            # Beam search steps `width` rows at once; sampling `num_samples`; greedy one.
            rows_run = getattr(decoder.cfg, "width", None) or (1 if decoder.deterministic
                                                                else num)
            work += rows_run * (len(prompt) + length)
            rows.append((prompt, num, length, seed, decoder))
        if work > requests.MAX_REQUEST_CHARS:
            raise RnnlabError(f"the request asks for {work:,} characters (rows x num_samples x "
                              f"(prompt + length)), more than {requests.MAX_REQUEST_CHARS:,}; "
                              f"send fewer rows or samples, or shorter ones")
        outputs = []
        for prompt, num, length, seed, decoder in rows:
            outputs += generate_scored(served.model, served.vocab, decoder, prompt=prompt,
                                       length=length, num_samples=num, window=served.window,
                                       rng=np.random.default_rng(seed))
        if scored:
            return pd.DataFrame({"text": [o.text for o in outputs],
                                 "score": [float(o.score) for o in outputs]})
        return [o.text for o in outputs]

    def summary(self, metrics: dict[str, float], vocab: Any = None) -> str:
        loss = metrics.get("val_loss", math.nan)
        unit = "char" if vocab is None or vocab.is_chars else "token"
        return f"val loss {loss:.4f} nats/{unit} ({loss / math.log(2):.4f} bits/{unit})"


__all__ = ["LMConfig", "LanguageModelTask", "build_lm", "sample_lines"]
