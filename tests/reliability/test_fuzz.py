"""Property-based fuzzing: random configs, files, prompts, logits and names never crash rnnlab.

Every property says "either a valid result, or one of rnnlab's one-line errors" - never a bare
NumPy/OmegaConf/Python exception.  Example counts are modest and deadlines off (the machine is
shared), so the whole file runs in seconds.
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from framework.cli.overrides import precheck_overrides
from framework.data.vocab import Vocab
from framework.errors import ConfigError, DataError, DivergenceError, PluginError, RnnlabError
from framework.nn.generation import generate
from framework.nn.models.language_model import CharRNN
from framework.plugins import load_plugins
from framework.registry import REGISTRIES, SAMPLERS, Registry
from framework.training.config import RunConfig, validate
from tests.helpers import compose_config

load_plugins()
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Values of every shape a command line or a YAML file can produce, and then some.
ANY_VALUE = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["${oops}", "${train.steps}", "1e9", "-0", "nan", "inf", "null", "???"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@pytest.fixture(scope="module")
def base_config() -> dict:
    raw = OmegaConf.to_container(compose_config(["mlflow.enabled=false"]), resolve=True)
    raw.pop("hydra", None)
    return raw


def _leaf_keys(tree: dict, prefix: tuple = ()) -> list[tuple]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            keys += _leaf_keys(value, (*prefix, key))
        else:
            keys.append((*prefix, key))
    return keys


# --------------------------------------------------------------------------- configs
@FAST
@given(data=st.data())
def test_config_validate_only_raises_config_or_plugin_errors(base_config, data):
    raw = copy.deepcopy(base_config)
    keys = _leaf_keys(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(keys))
        node = raw
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = data.draw(ANY_VALUE)
    try:
        rc = validate(raw)
    except (ConfigError, PluginError) as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert isinstance(rc, RunConfig)


@FAST
@given(group=st.sampled_from(sorted(REGISTRIES)), data=st.data())
def test_registry_validate_only_raises_config_or_plugin_errors(group, data):
    registry = REGISTRIES[group]
    name = data.draw(st.one_of(st.sampled_from(registry.names()), st.text(max_size=8)))
    node = {"name": name}
    schema = registry.schema(name) if name in registry else None
    fields = [f.name for f in schema.__dataclass_fields__.values()] if schema else ["x"]
    for field in data.draw(st.lists(st.sampled_from(fields + ["bogus"]), max_size=3)):
        if field != "name":
            node[field] = data.draw(ANY_VALUE)
    try:
        cfg = registry.validate(node)
    except (ConfigError, PluginError) as exc:
        assert "\n" not in str(exc)
        return
    assert cfg is not None


@FAST
@given(argv=st.lists(st.text(max_size=20), max_size=4))
def test_override_precheck_only_raises_plugin_errors(argv):
    try:
        precheck_overrides(argv)
    except (PluginError, ConfigError) as exc:  # unknown names; unknown options (--foo)
        assert "\n" not in str(exc)


@FAST
@given(group=st.sampled_from(sorted(REGISTRIES)), name=st.text(max_size=10))
def test_unknown_plugin_names_give_a_one_line_plugin_error(group, name):
    registry = REGISTRIES[group]
    assume(name not in registry)
    with pytest.raises(PluginError) as info:
        registry.get(name)
    message = str(info.value)
    assert message.startswith(f"unknown {registry.kind} ") and "available:" in message


@FAST
@given(name=st.text(max_size=12))
def test_registering_any_name_registers_or_refuses(name):
    registry = Registry("thing")

    class Plugin:
        pass

    try:
        registry.add(name, Plugin)
    except PluginError as exc:
        assert "invalid thing name" in str(exc)
        return
    assert registry.get(name) is Plugin and name in registry.names()


# --------------------------------------------------------------------------- text files
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(content=st.one_of(st.binary(max_size=300),
                         st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))),
       mode=st.sampled_from(["lines", "stream"]), lower=st.booleans())
def test_any_file_loads_as_a_corpus_or_a_data_error(content, mode, lower):
    from framework.registry import DATASETS

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.txt"
        path.write_bytes(content)
        dataset = DATASETS.build({"name": "textfile", "path": str(path), "mode": mode,
                                  "lower": lower})
        try:
            corpus = dataset.load()
        except DataError as exc:
            assert "\n" not in str(exc)
            return
    vocab = corpus.vocab
    assert corpus.kind == mode and vocab.size >= 2
    parts = corpus.train + corpus.val if mode == "lines" else [corpus.train, corpus.val]
    for ids in parts:
        assert ids.dtype == np.int64 and ((ids >= 0) & (ids < vocab.size)).all()
    assert sum(len(p) for p in parts) > 0


# --------------------------------------------------------------------------- vocabulary
@FAST
@given(text=st.text(min_size=1, max_size=200), eos=st.sampled_from([None, "\n"]))
def test_vocab_encode_decode_and_json_round_trip(text, eos):
    vocab = Vocab.from_text(text, eos=eos)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert Vocab.from_json(vocab.to_json()) == vocab
    assert vocab.to_json().isascii()


@FAST
@given(text=st.text(min_size=1, max_size=50), other=st.text(max_size=50))
def test_vocab_encode_of_foreign_text_is_a_data_error(text, other):
    vocab = Vocab.from_text(text)
    try:
        ids = vocab.encode(other)
    except DataError as exc:
        assert "not in the vocabulary" in str(exc)
        assert any(c not in vocab.stoi for c in other)
        return
    assert vocab.decode(ids) == other


@FAST
@given(blob=st.one_of(st.text(max_size=80), st.binary(max_size=80),
                      st.dictionaries(st.text(max_size=6), ANY_VALUE, max_size=4)))
def test_vocab_from_arbitrary_json_is_a_data_error(blob):
    try:
        Vocab.from_json(blob)
    except DataError:
        pass


# --------------------------------------------------------------------------- prompts
_TEXT = "hello world, this is a tiny corpus.\n"
_VOCAB = Vocab.from_text(_TEXT)
_NAMES_VOCAB = Vocab.from_text("abc\n", eos="\n")


def _model(vocab: Vocab) -> CharRNN:
    model = CharRNN(cell="gru", vocab_size=vocab.size, hidden_size=6)
    model.init_params(np.random.default_rng(0))
    return model


_MODELS = {None: _model(_VOCAB), "\n": _model(_NAMES_VOCAB)}


@FAST
@given(prompt=st.text(max_size=15), names=st.booleans(),
       sampler=st.sampled_from(SAMPLERS.names()),
       length=st.integers(0, 12), window=st.one_of(st.none(), st.integers(1, 4)))
def test_any_prompt_generates_text_or_a_data_error(prompt, names, sampler, length, window):
    vocab = _NAMES_VOCAB if names else _VOCAB
    model = _MODELS[vocab.eos]
    try:
        texts = generate(model, vocab, SAMPLERS.build({"name": sampler}), prompt=prompt,
                         length=length, num_samples=2, window=window,
                         rng=np.random.default_rng(0))
    except DataError as exc:
        assert "not in the vocabulary" in str(exc)
        assert any(c not in vocab.stoi for c in prompt)
        return
    assert len(texts) == 2
    for text in texts:
        assert text.startswith(prompt)
        assert set(text) <= set(vocab.chars)
        assert len(text) <= len(prompt) + length


# --------------------------------------------------------------------------- samplers
LOGIT = st.one_of(st.floats(-1e6, 1e6), st.just(-math.inf))


@FAST
@given(logits=st.lists(LOGIT, min_size=1, max_size=40),
       sampler=st.sampled_from(SAMPLERS.names()), seed=st.integers(0, 2**32 - 1),
       step=st.integers(0, 100), sample_index=st.integers(0, 10))
def test_samplers_return_a_valid_unmasked_index(logits, sampler, seed, step, sample_index):
    assume(any(math.isfinite(v) for v in logits))
    row = np.array(logits, dtype=np.float64)
    idx = SAMPLERS.build({"name": sampler})(row, rng=np.random.default_rng(seed), step=step,
                                            sample_index=sample_index)
    assert isinstance(idx, int) and 0 <= idx < len(row)
    assert math.isfinite(row[idx]), "a masked (-inf) entry was sampled"


@FAST
@given(logits=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=20),
       sampler=st.sampled_from(SAMPLERS.names()))
def test_samplers_on_non_finite_rows_pick_or_raise_divergence(logits, sampler):
    row = np.array(logits, dtype=np.float64)
    try:
        idx = SAMPLERS.build({"name": sampler})(row, rng=np.random.default_rng(0), step=0,
                                                sample_index=0)
    except DivergenceError:
        assert not math.isfinite(np.max(row)) or not np.isfinite(row).any()
        return
    assert 0 <= idx < len(row) and math.isfinite(row[idx])


@FAST
@given(data=st.data())
def test_sampler_options_build_a_sampler_or_a_config_error(data):
    name = data.draw(st.sampled_from(SAMPLERS.names()))
    schema = SAMPLERS.schema(name)
    node = {"name": name}
    for field in schema.__dataclass_fields__:
        if field != "name" and data.draw(st.booleans()):
            node[field] = data.draw(st.one_of(st.floats(allow_nan=True), st.integers(-5, 50),
                                              st.none()))
    try:
        sampler = SAMPLERS.build(node)
    except RnnlabError as exc:
        assert isinstance(exc, (ConfigError, PluginError)) and "\n" not in str(exc)
        return
    row = np.random.default_rng(1).standard_normal(9)
    assert 0 <= sampler(row, rng=np.random.default_rng(2), step=0, sample_index=0) < 9


# --------------------------------------------------------------------------- checkpoints
def _checkpoint_example():
    from tests.helpers import model_checkpoint

    return model_checkpoint(cell="lstm", num_layers=2, state_rows=3)


@FAST
@given(data=st.data())
def test_any_metadata_builds_a_model_or_gives_a_checkpoint_error(data):
    from framework.errors import CheckpointError
    from framework.training.checkpoint import build_model_from_checkpoint

    arrays, meta = _checkpoint_example()
    leaves = _leaf_keys(meta)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(leaves))
        node = meta
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if data.draw(st.booleans()):
                node[path[-1]] = data.draw(ANY_VALUE)
            else:
                node.pop(path[-1], None)
    try:
        model, vocab = build_model_from_checkpoint(arrays, meta)
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        return
    assert model.params.keys() == {k[len("param/"):] for k in arrays if k.startswith("param/")}


@FAST
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      max_size=6),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_any_damaged_checkpoint_file_loads_or_gives_a_checkpoint_error(flips, cut):
    from framework.errors import CheckpointError
    from framework.training.checkpoint import load_checkpoint, load_model, save_checkpoint

    arrays, meta = _checkpoint_example()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "c.npz", arrays, meta)
        data = bytearray(path.read_bytes())
        for where, xor in flips:
            data[int(where * len(data))] ^= xor
        if cut is not None:
            data = data[:int(cut * len(data))]
        path.write_bytes(bytes(data))
        for loader in (load_checkpoint, load_model):
            try:
                loader(path)
            except CheckpointError as exc:
                assert "\n" not in str(exc)
