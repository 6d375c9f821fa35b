"""The registry: one small class for every plugin kind; names spelled once; built from config."""

import dataclasses
from dataclasses import dataclass

import pytest

from framework.errors import ConfigError, PluginError
from framework.registry import ALL, Plugin, Registry


@dataclass
class ToySchema:
    size: int = 3

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"size must be > 0, got {self.size}")


def make_registry() -> Registry:
    reg = Registry("cell")
    for name in ("rnn", "lstm", "gru"):
        reg.add(name, type(name, (), {}))
    return reg


def test_unknown_name_lists_available_and_closest():
    with pytest.raises(PluginError) as info:
        make_registry().get("lstmm")
    assert str(info.value) == ("unknown cell 'lstmm'; did you mean 'lstm'? (available: gru, "
                               "lstm, rnn)")


def test_unknown_name_without_close_match():
    expected = r"^unknown cell 'transformer' \(available: gru, lstm, rnn\)$"
    with pytest.raises(PluginError, match=expected):
        make_registry().get("transformer")


def test_unknown_name_says_which_key_chooses_it():
    reg = Registry("feed", select="train.feed", options="train")
    reg.add("stream", type("Stream", (), {}))
    with pytest.raises(PluginError, match=r"^unknown train.feed 'stram'; did you mean 'stream'"):
        reg.get("stram")


def test_duplicate_is_an_error_unless_replace():
    reg = make_registry()

    class Other:
        pass

    with pytest.raises(PluginError, match="already registered"):
        reg.add("rnn", Other)
    reg.add("rnn", Other, replace=True)
    assert reg.get("rnn") is Other


def test_same_definition_registered_twice_is_harmless():
    reg = Registry("clip")

    @reg.register("toy", schema=ToySchema)
    class Toy:
        def __init__(self, cfg) -> None:
            self.cfg = cfg

    reg.add("toy", Toy, schema=ToySchema)  # e.g. the module imported under a second name
    assert reg.names() == ["toy"]


def test_the_decorator_names_the_plugin_and_its_schema_once():
    reg = Registry("clip")

    @reg.register("toy", schema=ToySchema)
    class Toy:
        def __init__(self, cfg) -> None:
            self.cfg = cfg

    assert Toy.name == "toy"
    schema = reg.schema("toy")
    assert Toy.schema is schema and issubclass(schema, ToySchema)
    assert [f.name for f in dataclasses.fields(schema)] == ["size", "name"]
    assert schema() == schema(size=3, name="toy") and schema().name == "toy"
    assert reg.defaults("toy") == {"name": "toy", "size": 3}
    # A schema that spells the name itself must agree with the decorator.
    reg.add("agrees", Toy, schema=dataclasses.make_dataclass(
        "S", [("name", str, dataclasses.field(default="agrees"))]))

    @dataclass
    class Disagrees:
        name: str = "other"

    with pytest.raises(PluginError, match="defaults its name field to 'other'"):
        reg.add("third", Toy, schema=Disagrees)


def test_build_validates_once_and_passes_the_instance():
    reg = Registry("clip")
    seen = []

    @reg.register("toy", schema=ToySchema)
    class Toy:
        def __init__(self, cfg, scale: float = 1.0) -> None:
            seen.append(cfg)
            self.cfg, self.scale = cfg, scale

    built = reg.build({"name": "toy", "size": 5}, scale=2.0)
    assert isinstance(built.cfg, ToySchema) and built.cfg.size == 5 and built.scale == 2.0
    assert reg.build(built.cfg).cfg is built.cfg  # an instance is not validated again
    with pytest.raises(ConfigError, match=r"^clip 'toy': clip.size must be > 0, got -1$"):
        reg.build({"name": "toy", "size": -1})
    with pytest.raises(ConfigError, match=r"^clip.size: Value 'big'"):
        reg.validate({"name": "toy", "size": "big"})
    with pytest.raises(ConfigError, match=r"^clip 'toy' has no option 'sise' \(its options: size\)"
                                          r"; did you mean 'clip.size'\?$"):
        reg.validate({"name": "toy", "sise": 2})


def test_from_config_is_preferred_and_gets_the_context():
    reg = Registry("feed", options="train")

    @reg.register("toy", schema=ToySchema)
    class Toy:
        def __init__(self, size: int, corpus: str) -> None:
            self.size, self.corpus = size, corpus

        @classmethod
        def from_config(cls, cfg, *, corpus):
            return cls(cfg.size, corpus)

    built = reg.build({"name": "toy", "size": 4}, corpus="text")
    assert (built.size, built.corpus) == (4, "text")


def test_plugins_without_a_schema_get_one_with_only_the_name():
    reg = Registry("sampler")

    @reg.register("plain")
    def plain(cfg):
        return cfg

    assert plain.name == "plain" and reg.option_names("plain") == []
    assert reg.build({"name": "plain"}).name == "plain"


def test_a_subclass_registered_anew_gets_its_own_name():
    reg = Registry("cell")

    @reg.register("base", schema=ToySchema)
    class Base(Plugin):
        pass

    @reg.register("child")
    class Child(Base):
        pass

    assert Child.name == "child" and reg.schema("child")().name == "child"
    assert reg.schema("base")().name == "base"
    assert [f.name for f in dataclasses.fields(reg.schema("child"))] == ["size", "name"]


def test_plugin_base_from_python_validates_like_the_config():
    reg = Registry("clip")

    @reg.register("toy", schema=ToySchema)
    class Toy(Plugin):
        pass

    assert Toy().cfg == reg.schema("toy")() and Toy().name == "toy"
    assert Toy(size=7).cfg.size == 7
    cfg = reg.validate({"name": "toy", "size": 2})
    assert Toy(cfg).cfg is cfg
    with pytest.raises(ConfigError, match=r"^clip 'toy': clip.size must be > 0, got 0$"):
        Toy(size=0)
    with pytest.raises(ConfigError, match="has no option 'colour'"):
        Toy(colour=1)
    with pytest.raises(TypeError, match="takes its config"):
        Toy(5)  # an option passed positionally


def test_invalid_names_rejected():
    with pytest.raises(PluginError):
        Registry("cell").add("bad name!", object)


def test_every_registry_is_importable_by_name():
    from framework.registry import (  # noqa: F401
        ATTENTIONS,
        CELLS,
        CLIPS,
        DATASETS,
        DECODERS,
        FEEDS,
        OPTIMIZERS,
        SAMPLERS,
        SCHEDULES,
        TASKS,
        TOKENIZERS,
    )

    assert set(ALL) == {"cell", "dataset", "clip", "sampler", "optimizer", "feed",
                        "lr_schedule", "task", "tokenizer", "attention", "decoder"}
    assert all(r.entry_points and r.entry_points.startswith("rnnlab.") for r in ALL.values())
