"""``python -m framework.predict``: what a trained model's task says about new input (a
classifier's top classes for texts, a forecaster's next values), from a checkpoint or a run.

    python -m framework.predict checkpoint=outputs/.../checkpoints/latest.npz text=Nakamura
    python -m framework.predict run_id=<id> text=[Nakamura,Schmidt] top_k=5
    python -m framework.predict checkpoint=<forecast checkpoint> history=[83,132,131,118]

The checkpoint's task parses the request and writes the lines (:meth:`Task.predict`): a
classifier prints ``text: class p, class p, ...`` per text (probabilities, best first), a
forecaster the next ``task.horizon`` values in the series' units after ``history`` (or, without
it, after the end of the dataset it was trained on).  Bad input is one line on stderr.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from framework import ROOT
from framework.cli.console import file_error, print_error, run_command
from framework.errors import RnnlabError


def run(cfg: Any) -> list[str]:
    """The lines the checkpoint's task prints for the request in ``cfg``."""
    from framework.cli.generate import load_for_generation
    from framework.tasks import requests
    from framework.tasks.base import task_from_meta

    requests.command_options(cfg)  # before the checkpoint is read
    model, vocab, meta = load_for_generation(cfg)
    task = task_from_meta(meta.model.task_meta)
    requests.command_inputs(cfg, task)
    return task.predict(model, vocab, meta, cfg)


# An absolute config path: a relative one is resolved against the caller's module.
@hydra.main(config_path=str(ROOT / "conf"), config_name="predict", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    predict_job(cfg)


def predict_job(cfg: DictConfig) -> None:
    """Print what the checkpoint's task says about the request of a composed config."""
    try:
        lines = run(cfg)
    except OSError as exc:  # a path no check caught: one line naming it
        print_error(file_error(exc))
        sys.exit(2)
    except RnnlabError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def main() -> int:
    from framework.cli.compose import run_reading_command

    # As framework.generate: decoders and samplers without a YAML file are offered to Hydra.
    code = run_command(lambda: run_reading_command("predict", predict_job, hydra_main))
    if code:
        sys.exit(code)
    return 0


__all__ = ["main", "run"]
