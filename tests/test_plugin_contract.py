"""The plugin contract, checked for every registered plugin of every kind, a newcomer's too.

The cases are collected after plugin discovery, so a plugin in cells/, datasets/, a folder named
in RNNLAB_PLUGIN_PATH or an installed package's entry point is covered without editing a test.
For every (kind, name):

- it builds from its schema's defaults and does its kind's job;
- its composed config (its YAML file in conf/<group>/ if it has one, else what Hydra is given
  from the schema) equals the schema's defaults, key for key;
- a misspelt name is answered with "did you mean" that name, a misspelt option with its closest
  option, and an option of another plugin is refused by listing this plugin's own, never by
  suggesting the key as typed;
- it survives a checkpoint: its config comes back from the checkpoint's JSON equal, a plugin
  rebuilt from it behaves the same, and one with state (an optimizer) continues bit-identically
  after state_dict() went through an .npz and load_state_dict().
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from framework.cli.overrides import hydra_error_message, precheck_overrides
from framework.data.corpora.labelled import labelled_corpus
from framework.data.corpora.parallel import parallel_corpus, split_pairs
from framework.data.corpora.sequences import split_sequences
from framework.data.corpora.series import series_corpus
from framework.data.corpora.text import lines_corpus, stream_corpus
from framework.data.feeds.base import Batch
from framework.errors import ConfigError, PluginError
from framework.nn.clip import ClipStats, global_norm
from framework.plugins import load_plugins
from framework.registry import ALL, REGISTRIES, TRAIN_PLUGINS
from tests.helpers import compose_config, data_file_reason

load_plugins()
CASES = [(kind, name) for kind, registry in ALL.items() for name in registry.names()]
GROUP = {registry.kind: group for group, registry in REGISTRIES.items()}
TRAIN_KEY = {registry.kind: key for key, registry in TRAIN_PLUGINS.items()}
TEXT = "\n".join(["the quick brown fox", "jumps over", "the lazy dog", "pack my box",
                  "with five dozen", "liquor jugs"] * 8) + "\n"


def ids(case: tuple[str, str]) -> str:
    return f"{case[0]}-{case[1]}"


def defaults(kind: str, name: str, tmp_path) -> object:
    """The plugin's validated default config (a file of text where a path is required)."""
    registry = ALL[kind]
    node = {"name": name}
    if kind == "dataset":
        reason = data_file_reason(registry.get(name))
        if reason:
            pytest.skip(reason)
        cls = registry.get(name)
        if getattr(cls, "contract_skip", None):
            pytest.skip(cls.contract_skip)
        needs = getattr(cls, "needs_path", None)
        if needs is None:  # a text dataset without a default file reads the user's
            needs = hasattr(cls, "source") and cls.source is None and not getattr(
                cls, "sources", ())
        if needs and "path" in registry.option_names(name):
            path = tmp_path / "text.txt"
            path.write_text(TEXT)
            node["path"] = str(path)
        # A plugin may name smaller options for tests (a few chorales instead of the corpus).
        node.update(getattr(cls, "test_options", {}))
    return registry.validate(node)


# --------------------------------------------------------------------------- each kind's job
def exercise_cell(cell) -> list[np.ndarray]:
    """Forward and backward on token ids and on dense input; the outputs to compare."""
    rng = np.random.default_rng(0)
    H, V, T, B = cell.hidden_size, 5, 4, 2
    params = cell.init_params(V, rng, "float64")
    assert {k: v.shape[-1] for k, v in params.items()} == {
        "W_x": cell.gates * H, "W_h": cell.gates * H, "b": cell.gates * H}
    out = []
    for x, ids_ in ((rng.integers(-1, V, (T, B)), True), (rng.normal(size=(T, B, V)), False)):
        hs, state, cache = cell.forward(params, x, None, layer_input_is_ids=ids_)
        assert hs.shape == (T, B, H) and len(state) == cell.state_size
        grads, dx, dstate0 = cell.backward(params, np.ones_like(hs), None, cache)
        assert set(grads) == set(params) and len(dstate0) == cell.state_size
        assert (dx is None) == ids_
        out += [np.asarray(hs), *grads.values()]
    return out


def exercise_dataset(dataset) -> list[np.ndarray]:
    corpus = dataset.load()
    if corpus.kind == "series":
        assert corpus.n_train > 0 and np.isfinite(corpus.values).all()
        return [corpus.values]
    if corpus.kind == "sequences":
        assert corpus.n_train > 0 and corpus.n_classes >= 2 and np.all(corpus.std > 0)
        assert {x.shape[1] for x in corpus.train + corpus.val} == {corpus.dim}
        return [np.concatenate(corpus.train), corpus.train_labels, corpus.mean, corpus.std]
    assert corpus.kind in ("lines", "stream", "labelled", "parallel") and corpus.vocab.size >= 2
    if corpus.kind == "stream":
        train = corpus.train
    elif corpus.kind == "parallel":
        assert corpus.tgt_vocab.eos is not None and corpus.n_val > 0
        train = np.concatenate([part for pair in corpus.train for part in pair])
    else:
        train = np.concatenate(list(corpus.train))
    assert train.size > 0
    return [np.array([json.dumps(corpus.vocab.to_json())]), train]


def exercise_task(task) -> list[np.ndarray]:
    """A task names the corpora it reads and an objective with a direction; every objective a
    sweep may choose has one, val_loss among them."""
    assert task.corpus_kinds and task.direction in ("minimize", "maximize")
    assert task.objective in task.compare_metrics or task.objective == "val_loss"
    assert "val_loss" in task.objectives and task.objective in task.objectives
    assert set(task.objectives.values()) <= {"minimize", "maximize"}
    return [np.array([task.objective, task.direction, *task.corpus_kinds])]


def exercise_tokenizer(tokenizer) -> list[np.ndarray]:
    """Fits a vocabulary of its kind on training texts; the vocabulary encodes by the same rule,
    decodes back to the symbols it knows and survives its JSON."""
    train = TEXT.split("\n")[:6]
    vocab = tokenizer.check_vocab(tokenizer.fit(train))
    again = type(vocab).from_json(vocab.to_json())
    assert again == vocab and vocab.size >= 2
    ids = vocab.encode(train[0])
    assert ids.dtype == np.int64 and vocab.decode_symbols(ids) == tokenizer.split(train[0])
    np.testing.assert_array_equal(again.encode(train[0]), ids)
    return [ids, np.array([vocab.to_json()])]


def exercise_attention(attention) -> list[np.ndarray]:
    """Forward and backward on a padded batch: weights are a distribution over the valid
    positions, the context their weighted sum, and padding gets no weight and no gradient."""
    rng = np.random.default_rng(0)
    S, B, size = 4, 3, ATTENTION_SIZE
    params = attention.init_params(rng, "float64")
    assert set(params) == set(attention.param_shapes())
    assert all(params[k].shape == shape for k, shape in attention.param_shapes().items())
    memory = rng.normal(size=(S, B, size))
    mask = np.arange(S)[:, None] < np.array([4, 2, 1])[None, :]
    query = rng.normal(size=(B, size))
    keys = attention.keys(params, memory)
    context, weights, cache = attention.forward(params, memory, keys, mask, query)
    assert context.shape == (B, attention.context_size) and weights.shape == (S, B)
    assert np.all(weights[~mask] == 0)
    grads, dmemory, dkeys, dquery = attention.backward(params, cache, np.ones_like(context))
    more, dmemory2 = attention.keys_backward(params, memory, dkeys)
    assert set(grads) | set(more) == set(params) and dquery.shape == query.shape
    assert np.all((dmemory + dmemory2)[~mask] == 0)
    if attention.context_size:
        np.testing.assert_allclose(weights.sum(axis=0), 1.0)
        np.testing.assert_allclose(context, np.einsum("sb,sbh->bh", weights, memory))
    return [context, weights, dmemory + dmemory2, dquery, *grads.values(), *more.values()]


class MarkovModel:
    """A step model whose next-id logits depend on the previous id only (id -1 starts)."""

    def __init__(self, vocab: int = 6) -> None:
        self.table = np.random.default_rng(3).normal(size=(vocab + 1, vocab)) * 2

    def zero_state(self, batch: int) -> np.ndarray:
        return np.zeros(batch, dtype=np.int64)

    def step(self, ids: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.table[np.asarray(ids) + 1].copy(), np.asarray(ids)


def exercise_decoder(decoder) -> list[np.ndarray]:
    """Decodes a batch of 3 rows of a tiny model: ids in the vocabulary, at most max_length of
    them, a finite total log-probability <= 0."""
    hyps = decoder.decode(MarkovModel(), 3, max_length=7, eos_id=0,
                          rng=np.random.default_rng(4))
    assert len(hyps) == 3
    for h in hyps:
        assert all(0 < i < 6 for i in h.ids) and len(h.ids) <= 7
        assert np.isfinite(h.score) and h.score <= 0 and isinstance(h.finished, bool)
    return [np.array([i for h in hyps for i in [*h.ids, -1]]), np.array([h.score for h in hyps])]


def exercise_clip(clip) -> list[np.ndarray]:
    out = []
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        grads = {"a": (rng.standard_normal((7, 5)) * 20).astype(dtype),
                 "b": (rng.standard_normal(5) * 20).astype(dtype)}
        arrays = {k: id(v) for k, v in grads.items()}
        norm = global_norm(grads)
        stats = clip(grads)
        assert isinstance(stats, ClipStats) and 0.0 <= stats.fraction_clipped <= 1.0
        assert stats.norm == pytest.approx(norm, rel=1e-5)
        for key, g in grads.items():  # clipped in place, dtype kept, never larger
            assert id(g) == arrays[key] and g.dtype == dtype
        assert global_norm(grads) <= norm * (1 + 1e-6)
        out += list(grads.values())
    return out


def exercise_sampler(sampler) -> list[np.ndarray]:
    logits = np.random.default_rng(5).standard_normal(17)
    keep = logits.copy()
    rng = np.random.default_rng(6)
    picks = [sampler(logits, rng=rng, step=k, sample_index=1) for k in range(30)]
    assert all(isinstance(i, int) and 0 <= i < 17 for i in picks)
    np.testing.assert_array_equal(logits, keep)  # the logits are not modified
    return [np.array(picks)]


def _grads(step: int, params: dict) -> dict:
    rng = np.random.default_rng(1000 + step)
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


def exercise_optimizer(optimizer, dtypes=(np.float64, np.float32)) -> list[np.ndarray]:
    """Steps in place, leaves the gradients alone, keeps the dtype (the last one's state is
    what the round trip saves)."""
    out = []
    for dtype in dtypes:
        rng = np.random.default_rng(0)
        params = {"w": rng.standard_normal((6, 8)).astype(dtype),
                  "b": rng.standard_normal(8).astype(dtype)}
        start = {k: v.copy() for k, v in params.items()}
        for step in range(3):
            g = _grads(step, params)
            before = {k: v.copy() for k, v in g.items()}
            optimizer.step(params, g)
            for k in g:
                np.testing.assert_array_equal(g[k], before[k])  # gradients are left untouched
        for k, v in params.items():
            assert v.dtype == dtype and not np.array_equal(v, start[k])
        for key, value in optimizer.state_dict().items():  # arrays only: .npz, no pickles
            assert isinstance(value, np.ndarray), key
            assert value.dtype == (np.int64 if key == "t" else dtype), key
        out += list(params.values())
    return out


CORPORA = {"lines": lines_corpus("lines", TEXT, val_fraction=0.2),
           "stream": stream_corpus("stream", TEXT, val_fraction=0.2),
           "labelled": labelled_corpus("labelled", TEXT.split(), [w[0] for w in TEXT.split()],
                                       val_fraction=0.2),
           "series": series_corpus("series", np.sin(np.arange(60.0))[:, None], columns=["y"]),
           "sequences": split_sequences(
               "sequences", [np.random.default_rng(k).normal(size=(3 + k % 5, 2))
                             for k in range(20)],
               [str(k % 3) for k in range(20)], val_fraction=0.2),
           "parallel": parallel_corpus("parallel", *split_pairs(
               [(w, w[::-1]) for w in sorted(set(TEXT.split()))], 0.2))}
ATTENTION_SIZE = 4  # the encoder output and decoder state sizes an attention is built with


def _arrays(batch) -> dict[str, np.ndarray]:
    return {k: v for k, v in vars(batch).items() if isinstance(v, np.ndarray)}


def _fitting_feed(build, corpus, refused: list[str]):
    """The feed on ``corpus`` with a batch of 3, else of 1 (a feed of one example per step)."""
    for batch_size in (3, 1):
        try:
            return build(corpus=corpus, batch_size=batch_size, seq_len=5, seed=0)
        except ConfigError as exc:  # a one-line refusal of a corpus or batch it cannot feed
            assert "\n" not in str(exc)
            refused.append(f"{corpus.name}, batch {batch_size}: {exc}")
    return None


def exercise_feed(build) -> list[np.ndarray]:
    """Build on a corpus of every kind; at least one must fit the feed, the others are refused in
    one line."""
    out, refused = [], []
    for corpus in CORPORA.values():
        feed = _fitting_feed(build, corpus, refused)
        if feed is None:
            continue
        later = [feed.batch(s) for s in (7, 0, 3)]
        for step, batch in zip((7, 0, 3), later, strict=True):
            if isinstance(batch, Batch):  # token batches: a target for every input position
                assert batch.inputs.shape == batch.targets.shape
                assert batch.inputs.dtype == np.int64 and batch.n_tokens > 0
            assert isinstance(batch.reset, bool) and len(batch.inputs) > 0
            again = feed.batch(step)  # a pure function of the step, in any order
            for key, value in _arrays(batch).items():
                np.testing.assert_array_equal(_arrays(again)[key], value)
            out += list(_arrays(batch).values())
        assert sum(1 for _ in feed.val_batches()) >= 0
    assert out, f"the feed accepts neither corpus: {refused}"
    return out


def exercise_schedule(schedule) -> list[np.ndarray]:
    factors = [schedule(step, 50) for step in range(50)]
    assert all(math.isfinite(f) and f > 0 for f in factors)
    assert [schedule(step, 50) for step in reversed(range(50))] == factors[::-1]
    return [np.array(factors)]


def build(kind: str, cfg) -> object:
    """What the trainer builds from ``cfg`` (a feed still needs the corpus: a function)."""
    registry = ALL[kind]
    if kind == "feed":
        return lambda **run: registry.build(cfg, **run)
    if kind == "attention":
        return registry.build(cfg, memory_size=ATTENTION_SIZE, query_size=ATTENTION_SIZE)
    return registry.build(cfg)


EXERCISE = {"cell": exercise_cell, "dataset": exercise_dataset, "clip": exercise_clip,
            "sampler": exercise_sampler, "optimizer": exercise_optimizer, "feed": exercise_feed,
            "lr_schedule": exercise_schedule, "task": exercise_task,
            "tokenizer": exercise_tokenizer, "attention": exercise_attention,
            "decoder": exercise_decoder}


# --------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_builds_from_its_defaults_and_does_its_job(case, tmp_path):
    kind, name = case
    cfg = defaults(kind, name, tmp_path)
    assert cfg.name == name
    plugin = build(kind, cfg)
    if kind in EXERCISE:
        EXERCISE[kind](plugin)
    assert ALL[kind].get(name).name == name  # the decorator named it


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_composed_config_is_the_schema_defaults(case):
    """The YAML file (if any) or the generated config has the schema's keys and defaults."""
    kind, name = case
    registry = ALL[kind]
    if kind in GROUP:
        group = GROUP[kind]
        node = OmegaConf.to_container(compose_config([f"{group}={name}"])[group])
        assert node == registry.defaults(name)
    elif kind in TRAIN_KEY:
        train = OmegaConf.to_container(compose_config([f"train.{TRAIN_KEY[kind]}={name}"]).train)
        mine = {k: v for k, v in registry.defaults(name).items() if k != "name"}
        assert {k: train[k] for k in mine} == mine
    else:
        pytest.skip(f"{kind} plugins are not chosen from the command line yet")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_unknown_names_and_options_get_did_you_mean(case):
    kind, name = case
    registry = ALL[kind]
    with pytest.raises(PluginError, match=f"did you mean '{name}'") as info:
        registry.get(name + "x")
    assert "\n" not in str(info.value)
    if kind not in GROUP and kind not in TRAIN_KEY:
        return
    with pytest.raises(PluginError, match=f"did you mean '{name}'"):
        precheck_overrides([f"{registry.select}={name}x"])
    prefix = f"train.{TRAIN_KEY[kind]}={name}" if kind in TRAIN_KEY else f"{GROUP[kind]}={name}"
    section = registry.options
    options = registry.option_names(name)
    if options:  # a typo of its first option suggests that option
        message = compose_error([prefix, f"{section}.{options[0]}x=1"])
        assert f"did you mean '{section}.{options[0]}'?" in message, message
    others = sorted({o for n in registry.names() for o in registry.option_names(n)}
                    - set(options))
    if kind in GROUP and others:  # another plugin's option: this plugin's own are listed
        message = compose_error([prefix, f"{section}.{others[0]}=1"])
        assert f"{kind} '{name}' has no option '{others[0]}'" in message, message
        assert f"did you mean '{section}.{others[0]}'" not in message, message


def compose_error(overrides: list[str]) -> str:
    try:
        compose_config(overrides)
    except Exception as exc:  # Hydra's composition error, as the command line reports it
        message = hydra_error_message(exc)
        assert "\n" not in message
        return message
    raise AssertionError(f"{overrides} composed without an error")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_survives_a_checkpoint_round_trip(case, tmp_path):
    kind, name = case
    registry = ALL[kind]
    cfg = defaults(kind, name, tmp_path)
    saved = json.loads(json.dumps(dataclasses.asdict(cfg)))  # as the checkpoint meta holds it
    restored = registry.validate(saved)
    assert restored == cfg
    if kind not in EXERCISE:
        return
    first, second = build(kind, cfg), build(kind, restored)
    if kind == "optimizer":
        exercise_optimizer(first, dtypes=(np.float32,))
        path = tmp_path / "optimizer.npz"
        np.savez(path, **first.state_dict())
        with np.load(path, allow_pickle=False) as data:
            second.load_state_dict({k: data[k] for k in data.files})
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
            np.testing.assert_array_equal(a, b)
        params = {"w": np.ones((6, 8), np.float32), "b": np.ones(8, np.float32)}
        twin = {k: v.copy() for k, v in params.items()}
        for step in range(3, 6):  # both continue the same way, bit for bit
            first.step(params, _grads(step, params))
            second.step(twin, _grads(step, twin))
        for k in params:
            np.testing.assert_array_equal(params[k], twin[k])
        return
    # No state of its own: a plugin rebuilt from the saved config behaves the same.
    for a, b in zip(EXERCISE[kind](first), EXERCISE[kind](second), strict=True):
        np.testing.assert_array_equal(a, b)
