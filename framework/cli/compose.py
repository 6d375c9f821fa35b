"""Composing the config of a command that only reads one: once, with Hydra's Compose API.

``framework.generate`` and ``framework.predict`` only read a config: a full ``@hydra.main`` app
composes it twice (once to learn the run mode, once to run) and sets up a job it does not need,
which is most of their start-up. A command line of ``key=value`` overrides is composed once here,
with the config's own logging settings applied as the app would; a command line with a Hydra
flag (``--help``, ``--cfg job``, ``-m``, ...) goes to the full app, which owns those behaviours.
Either way the overrides are read by Hydra's grammar, so its errors (and rnnlab's one-line
version of them, :func:`framework.cli.overrides.run_hydra`) are the same.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from framework.cli.overrides import CONF


def has_hydra_flag(argv: list[str]) -> bool:
    """True when the command line holds a flag (``--help``, ``--cfg``, ``-m``, ...), which only
    the full Hydra app handles; ``key=value`` overrides are not flags."""
    return any(arg.startswith("-") and arg != "-" for arg in argv)


def compose_config(config_name: str, overrides: list[str]) -> Any:
    """The config ``config_name`` (in conf/) with ``overrides``, composed once, without its
    ``hydra`` node; its ``hydra/hydra_logging`` and ``hydra/job_logging`` are applied, and
    the overrides are read as command-line ones, as the app does."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import configure_log
    from hydra.types import RunMode
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3",
                               job_name=config_name):
        cfg = GlobalHydra.instance().hydra.compose_config(
            config_name=config_name, overrides=overrides, run_mode=RunMode.RUN,
            from_shell=True, with_log_configuration=True)
    configure_log(cfg.hydra.job_logging, cfg.hydra.verbose)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_composed(config_name: str, job: Callable[[Any], Any],
                 app: Callable[[], Any]) -> Callable[[], Any]:
    """What :func:`~framework.cli.overrides.run_hydra` calls for a command: ``job(cfg)`` on
    the config composed from ``sys.argv`` (as run_hydra leaves it: overrides quoted for
    Hydra), or the full Hydra ``app`` when the command line holds a Hydra flag."""

    def entry() -> Any:
        argv = sys.argv[1:]
        if has_hydra_flag(argv):
            return app()
        return job(compose_config(config_name, argv))

    return entry


def run_reading_command(config_name: str, job: Callable[[Any], Any],
                        app: Callable[[], Any]) -> None:
    """The body of a command that reads a config (``framework.generate``,
    ``framework.predict``): unknown flags, plugin and experiment names refused in one line,
    the plugins without a YAML file (decoders, samplers, ...) given to Hydra, then ``job`` on
    the composed config (or the full ``app`` for a Hydra flag), Hydra's errors as one line."""
    from framework.cli.overrides import precheck_overrides, run_hydra, store_plugin_configs

    precheck_overrides(sys.argv[1:])
    store_plugin_configs(config_name)
    run_hydra(run_composed(config_name, job, app))


__all__ = ["compose_config", "has_hydra_flag", "run_composed", "run_reading_command"]
