"""The registry: one small class for every plugin kind."""

from dataclasses import dataclass

import pytest

from framework.errors import ConfigError, PluginError
from framework.plugins import load_plugins
from framework.registry import REGISTRIES, Registry


@dataclass
class ToySchema:
    name: str = "toy"
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
    assert str(info.value) == "unknown cell 'lstmm'; did you mean 'lstm'? available: gru, lstm, rnn"


def test_unknown_name_without_close_match():
    expected = r"^unknown cell 'transformer' available: gru, lstm, rnn$"
    with pytest.raises(PluginError, match=expected):
        make_registry().get("transformer")


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
        def __init__(self, size: int) -> None:
            self.size = size

    reg.add("toy", Toy, schema=ToySchema)  # e.g. the module imported under a second name
    assert reg.names() == ["toy"]


def test_decorator_registers_schema_and_build_validates():
    reg = Registry("clip")

    @reg.register("toy", schema=ToySchema)
    class Toy:
        def __init__(self, size: int, scale: float = 1.0) -> None:
            self.size, self.scale = size, scale

    built = reg.build({"name": "toy", "size": 5}, scale=2.0)
    assert (built.size, built.scale) == (5, 2.0)
    with pytest.raises(ConfigError, match="size must be > 0, got -1"):
        reg.build({"name": "toy", "size": -1})
    with pytest.raises(ConfigError, match=r"^clip.size: Value 'big'"):
        reg.validate({"name": "toy", "size": "big"})


def test_invalid_names_rejected():
    with pytest.raises(PluginError):
        Registry("cell").add("bad name!", object)


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_kind_has_plugins_with_schemas(kind):
    load_plugins()
    registry = REGISTRIES[kind]
    assert len(registry) >= 1
    for name in registry.names():
        schema = registry.schema(name)
        assert schema is not None, f"{kind} '{name}' registered without a config schema"
        instance = schema()  # every option has a default
        assert instance.name == name
