"""The options of ``python -m framework.generate``, checked (type and range) before any work.

The same one-line errors as training: ``length: Value 'abc' of type 'str' could not be converted
to Integer``, ``num_samples must be in [1, 10000], got 0``.  The sampler is checked by its plugin
schema when it is built, the decoder by :func:`framework.nn.decoding.build_decoder`; the
checkpoint when it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from framework.errors import ConfigError
from framework.nn.generation import MAX_LENGTH, MAX_PROMPT, MAX_SAMPLES
from framework.registry import describe_omegaconf_error

MAX_SEED = 2**63 - 1


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class GenerateArgs:
    """The options of ``python -m framework.generate`` that are not plugins (conf/generate.yaml
    documents each one)."""

    checkpoint: str | None = None
    run_id: str | None = None
    artifact: str | None = None
    prompt: str = ""
    num_samples: int = 5
    length: int = 200
    window: int | None = None
    seed: int | None = None
    score: bool = False  # print each output's total log-probability

    def __post_init__(self) -> None:
        _check(1 <= self.num_samples <= MAX_SAMPLES,
               f"num_samples must be in [1, {MAX_SAMPLES}], got {self.num_samples}")
        _check(1 <= self.length <= MAX_LENGTH,
               f"length must be in [1, {MAX_LENGTH}], got {self.length}")
        _check(len(self.prompt) <= MAX_PROMPT,
               f"prompt has {len(self.prompt):,} characters, more than {MAX_PROMPT:,}")
        _check(self.window is None or self.window >= 1,
               f"window must be >= 1 or null, got {self.window}")
        _check(self.seed is None or 0 <= self.seed <= MAX_SEED,
               f"seed must be null or an integer in [0, 2**63 - 1], got {self.seed}")


def validate_generate(cfg: DictConfig | dict[str, Any]) -> GenerateArgs:
    """The checked options of a composed ``generate`` config; ConfigError with one line."""
    try:
        raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) \
            else dict(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_omegaconf_error(exc)) from None
    values = {k: raw.get(k) for k in GenerateArgs.__dataclass_fields__ if k in raw}
    if values.get("prompt") is None:
        values["prompt"] = ""  # prompt=null: no prompt
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(GenerateArgs), values))
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_omegaconf_error(exc)) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


__all__ = ["GenerateArgs", "validate_generate"]
