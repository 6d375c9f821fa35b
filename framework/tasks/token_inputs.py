"""Token inputs of the text tasks: the chosen tokenizer's vocabulary, the embedding and its vectors.

Shared by ``classify`` and ``lm`` (the tasks that read token ids):

* :func:`tokenize_corpus` re-encodes a corpus with ``tokenizer=<name>`` (or the dataset's own
  default tokenizer), fitted on the training split only; without one the corpus is unchanged;
* :func:`build_embedding` makes the ``model.embedding`` table (None for ``size=0``: one-hot
  input, every earlier number unchanged) and loads its pretrained vectors, which the table uses
  when the model's parameters are initialised;
* :func:`embedding_field` / :func:`read_embedding_field` / :func:`embedding_from_field`: the
  ``embedding`` key of a checkpoint's ``task`` field, written, validated (the file is
  untrusted) and turned back into the layer that prediction, generation and serving rebuild.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from framework.errors import ConfigError, DataError
from framework.nn.embedding import MAX_EMBEDDING, Embedding

# A lines corpus re-split into words or tokens ends each example with this token: the
# characters' end symbol is a line break, which no word or token may be (whitespace separates
# them), while "<eos>" can never come out of the word rule, which splits "<" and ">" off.
END_TOKEN = "<eos>"


# ------------------------------------------------------------------------------ tokenizer
def chosen_tokenizer(rc: Any) -> Any:
    """The tokenizer plugin of the run: ``tokenizer=<name>``, else the dataset's default
    (``rotten_tomatoes``: words), else None (the dataset's own symbols)."""
    from framework.registry import DATASETS, TOKENIZERS

    if rc.tokenizer is not None:
        return TOKENIZERS.build(rc.tokenizer)
    default = getattr(DATASETS.get(rc.dataset.name), "default_tokenizer", None)
    return TOKENIZERS.build({"name": default}) if default else None


def _held_out(vocab: Any, texts: list[str], corpus: Any, tokenizer: Any) -> list[Any]:
    """The validation texts encoded with the vocabulary fitted on the training split; a
    tokenizer without an unknown token cannot encode what training never saw: one line."""
    try:
        return [vocab.encode(t) for t in texts]
    except DataError as exc:
        raise DataError(f"'{corpus.name}': its validation split has {vocab.unit}s the training "
                        f"split lacks, and tokenizer={tokenizer.name} has no unknown token "
                        f"({str(exc).split('; ')[0].removeprefix('text contains ')}); use "
                        f"tokenizer=words, which maps them to its unknown token") from None


def tokenize_corpus(rc: Any, corpus: Any) -> Any:
    """``corpus`` encoded with the run's tokenizer (fitted on its training split), or unchanged
    when there is none or it makes the vocabulary the corpus already has."""
    tokenizer = chosen_tokenizer(rc)
    vocab = getattr(corpus, "vocab", None)
    if tokenizer is None or vocab is None or tokenizer.vocab_kind == vocab.kind:
        return corpus  # e.g. tokenizer=chars on a character dataset: its ids as they are
    if not vocab.is_chars:
        raise ConfigError(f"tokenizer={tokenizer.name} cannot re-split '{corpus.name}', whose "
                          f"symbols are {vocab.unit}s already; drop the tokenizer option")
    if corpus.kind == "labelled":
        new = tokenizer.fit(corpus.train_texts)
        return dataclasses.replace(corpus, vocab=new,
                                   train=[new.encode(t) for t in corpus.train_texts],
                                   val=_held_out(new, corpus.val_texts, corpus, tokenizer))
    if corpus.kind == "lines":  # one example a line; the end token closes each
        train = [vocab.decode(ids) for ids in corpus.train]
        new = tokenizer.fit(train, eos=END_TOKEN)
        encode = [new.encode(t) for t in train]
        val = _held_out(new, [vocab.decode(ids) for ids in corpus.val], corpus, tokenizer)
        return dataclasses.replace(corpus, vocab=new, train=[e for e in encode if e.size],
                                   val=[e for e in val if e.size])
    if corpus.kind == "stream":
        text = vocab.decode(corpus.train)
        new = tokenizer.fit([text])
        train = new.encode(text)
        (val,) = _held_out(new, [vocab.decode(corpus.val)], corpus, tokenizer)
        if train.size < 2:
            raise DataError(f"'{corpus.name}' has {train.size} training {new.unit}(s) with "
                            f"tokenizer={tokenizer.name}; use a longer text")
        return dataclasses.replace(corpus, vocab=new, train=train, val=val)
    raise ConfigError(f"tokenizer={tokenizer.name} does not apply to '{corpus.name}' "
                      f"({corpus.kind}); drop the tokenizer option")


# ------------------------------------------------------------------------------ embedding
def embedding_size(rc: Any) -> int:
    """``model.embedding.size`` of a run config (0, one-hot, for one without the section)."""
    return int(getattr(getattr(rc.model, "embedding", None), "size", 0) or 0)


def check_embedding(rc: Any, corpus: Any) -> None:
    """An embedding reads token ids: refuse it for real-valued inputs, in one line."""
    size = embedding_size(rc)
    if size and getattr(corpus, "vocab", None) is None:
        raise ConfigError(f"model.embedding.size={size} needs token inputs, "
                          f"but '{corpus.name}' gives real-valued vectors; set "
                          f"model.embedding.size=0")


def build_embedding(rc: Any, vocab: Any) -> tuple[Embedding | None, Any]:
    """``(the model.embedding layer or None, its PretrainedVectors or None)``; pretrained
    vectors are loaded (and every problem with them reported) before any training."""
    cfg = rc.model.embedding
    if not cfg.size:
        return None, None
    layer = Embedding(vocab.size, cfg.size, trainable=cfg.trainable)
    if cfg.pretrained == "none":
        return layer, None
    from framework.data.vectors import load_vectors

    skip = [t for t in (vocab.unk, vocab.eos) if t is not None]
    vectors = load_vectors(cfg.pretrained, vocab.chars, dim=cfg.size, skip=skip)
    layer.pretrained = (vectors.vectors, vectors.found)
    return layer, vectors


def shape_embedding(rc: Any, vocab: Any) -> Embedding | None:
    """The ``model.embedding`` layer :func:`build_embedding` makes, without reading its
    pretrained vectors: what memory is sized from."""
    cfg = rc.model.embedding
    return Embedding(vocab.size, cfg.size, trainable=cfg.trainable) if cfg.size else None


def vectors_bytes(rc: Any, vocab: Any) -> int:
    """Bytes the pretrained vectors of the run hold while the model is built: one float32 row
    of ``model.embedding.size`` values per vocabulary word (0 without pretrained vectors)."""
    cfg = rc.model.embedding
    return 4 * vocab.size * int(cfg.size) if cfg.size and cfg.pretrained != "none" else 0


def coverage_metrics(vectors: Any) -> dict[str, float]:
    """The coverage of the vocabulary by the pretrained vectors, as run metrics."""
    if vectors is None:
        return {}
    return {"embedding_coverage": vectors.coverage, "embedding_words_covered": vectors.n_found,
            "embedding_words": vectors.n_words}


# ------------------------------------------------------------------------------ checkpoints
def embedding_field(rc: Any) -> dict[str, Any] | None:
    """The checkpoint's record of the table (None without one)."""
    cfg = rc.model.embedding
    return {"size": int(cfg.size), "trainable": bool(cfg.trainable)} if cfg.size else None


def read_embedding_field(fields: Any, raw: Any) -> dict[str, Any] | None:
    """The validated ``task.embedding`` of an untrusted checkpoint (absent: no embedding)."""
    value = raw.get("embedding")
    if value is None:
        return None
    m = fields.mapping(value, "task.embedding", keys=("size", "trainable"), optional=False)
    size = fields.integer(m.get("size"), "task.embedding.size", 1, MAX_EMBEDDING)
    trainable = m.get("trainable", True)
    if not isinstance(trainable, bool):
        raise fields.fail("task.embedding.trainable", "true or false", trainable)
    return {"size": size, "trainable": trainable}


def embedding_from_field(task_meta: Any, vocab: Any) -> Embedding | None:
    """The layer a checkpoint's validated ``task`` field describes (its table is in the file)."""
    field = task_meta.get("embedding") if task_meta else None
    if not field:
        return None
    return Embedding(vocab.size, field["size"], trainable=field["trainable"])


__all__ = ["END_TOKEN", "build_embedding", "check_embedding", "chosen_tokenizer",
           "coverage_metrics", "embedding_field", "embedding_from_field", "embedding_size",
           "read_embedding_field", "shape_embedding", "tokenize_corpus", "vectors_bytes"]
