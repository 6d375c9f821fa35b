"""``python -m framework.predict``: a classifier's top classes for texts, or a forecaster's next
values, from a checkpoint file or an MLflow run.

    python -m framework.predict checkpoint=outputs/.../checkpoints/latest.npz text=Nakamura
    python -m framework.predict run_id=<id> text=[Nakamura,Schmidt] top_k=5
    python -m framework.predict checkpoint=<forecast checkpoint> history=[83,132,131,118]

A classifier prints one line per text: ``text: class p, class p, ...`` (probabilities, best first).
A forecaster prints the next ``task.horizon`` values in the series' units, after ``history`` (or,
without it, after the end of the dataset it was trained on).  Bad input is one line on stderr.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig

from framework import ROOT
from framework.cli.console import print_error, run_command
from framework.errors import ConfigError, DataError, RnnlabError

MAX_TEXTS = 10_000
MAX_TEXT_CHARS = 10_000


def _texts(value: Any) -> list[str]:
    if value is None:
        raise ConfigError("pass text=<a text> or text=[a,b,...] to classify")
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        value = [t.strip() for t in value[1:-1].split(",")]  # text=[a,b] arrives as free text
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    texts = [str(t) for t in items]
    if not texts or len(texts) > MAX_TEXTS:
        raise ConfigError(f"pass between 1 and {MAX_TEXTS} texts, got {len(texts)}")
    long = [t for t in texts if len(t) > MAX_TEXT_CHARS]
    if long:
        raise ConfigError(f"a text is {len(long[0])} characters long; at most {MAX_TEXT_CHARS}")
    return texts


def classify_lines(model: Any, vocab: Any, meta: Any, texts: list[str], top_k: int) -> list[str]:
    from framework.tasks.classify import predict_top_k

    rows = predict_top_k(model, meta.model.task_meta, texts, top_k, vocab=vocab)
    return [f"{text}: " + ", ".join(f"{name} {p:.3f}" for name, p in top)
            for text, top in zip(texts, rows, strict=True)]


def run(cfg: Any) -> list[str]:
    from framework.cli.generate import load_for_generation

    model, vocab, meta = load_for_generation(cfg)
    task = meta.model.task
    if task == "classify":
        top_k = cfg.get("top_k")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
        return classify_lines(model, vocab, meta, _texts(cfg.get("text")), top_k)
    if task == "forecast":
        from framework.tasks.forecast import forecast_values

        nxt = forecast_values(model, meta.model.task_meta, cfg.get("history"),
                              meta.config.get("dataset"))
        return [" ".join(f"{v:.6g}" for v in row) for row in nxt]
    raise DataError(f"this checkpoint is a '{task}' model; predict takes classify or forecast "
                    f"checkpoints (use python -m framework.generate for a language model)")


# An absolute config path: a relative one is resolved against the caller's module.
@hydra.main(config_path=str(ROOT / "conf"), config_name="predict", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    try:
        lines = run(cfg)
    except RnnlabError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def main() -> int:
    from framework.cli.overrides import run_hydra

    code = run_command(lambda: run_hydra(hydra_main))
    if code:
        sys.exit(code)
    return 0


__all__ = ["classify_lines", "main", "run"]
