"""The ``decoder`` config group: every YAML of conf/decoder/ builds its plugin, and every bad
option (a width below 1 or above the vocabulary, a bad length penalty, an unknown option or
name) is a one-line ConfigError naming it."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from framework import ROOT
from framework.errors import ConfigError, RnnlabError
from framework.nn.decoding import Beam, Greedy, Sample, build_decoder
from framework.nn.samplers import TopK
from framework.registry import DECODERS

CONF = ROOT / "conf" / "decoder"


def test_every_decoder_yaml_names_a_registered_plugin_with_its_defaults():
    files = sorted(CONF.glob("*.yaml"))
    assert {f.stem for f in files} == {"greedy", "sample", "beam"}
    for path in files:
        node = OmegaConf.load(path)
        assert node.name == path.stem
        assert dict(node) == DECODERS.defaults(path.stem)
        assert build_decoder(node).name == path.stem


def test_build_decoder_from_a_node_a_name_and_a_sampler_node():
    assert isinstance(build_decoder("greedy"), Greedy)
    beam = build_decoder(OmegaConf.create({"name": "beam", "width": 3, "length_penalty": 0.6}),
                         vocab_size=3)
    assert isinstance(beam, Beam) and (beam.cfg.width, beam.cfg.length_penalty) == (3, 0.6)
    sample = build_decoder({"name": "sample"},
                           sampler=OmegaConf.create({"name": "top_k", "k": 2}))
    assert isinstance(sample, Sample) and isinstance(sample.sampler, TopK)
    assert sample.sampler.cfg.k == 2
    assert build_decoder({"name": "sample"}).sampler.name == "categorical"


@pytest.mark.parametrize("node, vocab_size, needle", [
    ({"name": "beam", "width": 0}, None, "width must be >= 1, got 0"),
    ({"name": "beam", "width": -2}, None, "width must be >= 1, got -2"),
    ({"name": "beam", "width": "abc"}, None, "width"),
    ({"name": "beam", "width": 1.5}, None, "width"),
    ({"name": "beam", "width": True}, None, "width"),
    ({"name": "beam", "width": 28}, 27, "decoder.width=28 is larger than the 27 symbols"),
    ({"name": "beam", "length_penalty": -1.0}, None, "length_penalty must be in [0, 10]"),
    ({"name": "beam", "widht": 3}, None, "widht"),
    ({"name": "greedy", "width": 3}, None, "width"),
    ({"name": "nope"}, None, "nope"),
    ({"width": 3}, None, "decoder must name a decoding strategy"),
    (7, None, "decoder must name a decoding strategy"),
])
def test_bad_decoder_options_are_one_line_errors(node, vocab_size, needle):
    with pytest.raises(RnnlabError) as info:
        build_decoder(node, vocab_size=vocab_size)
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_width_equal_to_the_vocabulary_is_accepted():
    assert build_decoder({"name": "beam", "width": 27}, vocab_size=27).cfg.width == 27
    with pytest.raises(ConfigError, match="use a width in \\[1, 27\\]"):
        build_decoder({"name": "beam", "width": 28}, vocab_size=27)
