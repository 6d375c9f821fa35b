"""Whether an Optuna sweep may continue an existing study: same direction, compatible search space,
same fixed settings. Checked before anything is created (no MLflow parent run, no new study).

A study records the fixed settings of the sweep that created it (every config key the search
space does not vary, flattened: ``train.steps``, ``dataset.name``, ...) as the user attribute
``rnnlab.settings``. A later sweep on the same study with other settings would mix trials that
are not comparable, so it is refused with the differing keys, unless
``hydra.sweeper.allow_changed_settings=true`` says to continue anyway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.errors import ConfigError

SETTINGS_ATTR = "rnnlab.settings"
# Set per trial or per invocation by the sweeper and the tracking, not settings of the study.
_NOT_SETTINGS = ("hydra", "optuna", "mlflow", "resume")
_SHOWN = 3  # differing keys named in the error


def fixed_settings(config: DictConfig, searched: list[str]) -> dict[str, str]:
    """The sweep's settings that every trial shares: the config without ``hydra``, ``optuna``,
    ``mlflow`` and ``resume``, flattened to ``key: json``, minus the searched keys."""
    container = OmegaConf.to_container(config, resolve=False)
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
            return
        key = prefix[:-1]
        if key.split(".", 1)[0] in _NOT_SETTINGS:
            return
        if any(key == s or key.startswith(s + ".") for s in searched):
            return
        out[key] = json.dumps(node, sort_keys=True, default=str)

    walk(container, "")
    return out


def check_space(study: Any, space: Mapping[str, Any]) -> None:
    """Refuse a search space whose distribution of a key differs in kind from the study's."""
    from optuna.distributions import check_distribution_compatibility

    seen: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            seen.setdefault(name, dist)
    for name, new in space.items():
        old = seen.get(name)
        if old is None:
            continue
        try:
            check_distribution_compatibility(old, new)
        except ValueError:
            raise ConfigError(
                f"{name}: Optuna study {study.study_name!r} searched it as {_show(old)}, this "
                f"sweep as {_show(new)}; search it as before, or start a new study with "
                f"hydra.sweeper.study_name=<new name>") from None


def check_settings(study: Any, settings: Mapping[str, str], *, allow_changed: bool) -> None:
    """Refuse to continue a study created with other fixed settings (see the module doc)."""
    raw = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(raw, dict) or allow_changed:
        return
    keys = sorted(k for k in set(raw) | set(settings) if raw.get(k) != settings.get(k))
    if not keys:
        return
    shown = ", ".join(f"{k}={_value(raw.get(k))} -> {_value(settings.get(k))}"
                      for k in keys[:_SHOWN])
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    raise ConfigError(
        f"Optuna study {study.study_name!r} was run with other settings ({shown}{more}); start a "
        f"new study with hydra.sweeper.study_name=<new name>, or continue this one anyway with "
        f"hydra.sweeper.allow_changed_settings=true")


def record_settings(study: Any, settings: Mapping[str, str]) -> None:
    """Store the settings on a study that has none yet (a new study, or one of an older rnnlab)."""
    if not isinstance(study.user_attrs.get(SETTINGS_ATTR), dict):
        study.set_user_attr(SETTINGS_ATTR, dict(settings))


def _value(raw: str | None) -> str:
    if raw is None:
        return "(unset)"
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return "null" if value is None else str(value)


def _show(dist: Any) -> str:
    """A distribution in the sweep grammar's words."""
    name = type(dist).__name__
    if name == "CategoricalDistribution":
        return f"choice({', '.join(map(str, dist.choices))})"
    low, high = getattr(dist, "low", "?"), getattr(dist, "high", "?")
    kind = "log interval" if getattr(dist, "log", False) else "interval"
    number = "int " if name == "IntDistribution" else ""
    return f"{number}{kind}({low}, {high})"


__all__ = ["SETTINGS_ATTR", "check_settings", "check_space", "fixed_settings",
           "record_settings"]
