"""``python -m framework.generate``: sample text from a checkpoint file or an MLflow run.

    python -m framework.generate checkpoint=outputs/.../checkpoints/latest.npz prompt=ab
    python -m framework.generate run_id=<id> sampler=top_k sampler.k=5 num_samples=3 length=300
    python -m framework.generate checkpoint=<music model> out=piece.mid   # MIDI files
    python -m framework.generate run_id=<id> decoder=beam decoder.width=5 score=true

``decoder=`` picks the decoding plugin (conf/decoder/: ``sample``, the default, draws with the
``sampler=`` plugin; ``greedy``; ``beam`` with ``decoder.width`` and ``decoder.length_penalty``);
``score=true`` prints each output's total log-probability under the model after it.

Names datasets print one sample per line (as generated, lower-case); text datasets print the
prompt and its continuation, samples separated by a blank line.  Bad input (missing checkpoint,
unknown run id, prompt characters outside the vocabulary, bad options) is one line on stderr and
exit status 2.  Hydra writes no files: no output directory, no .hydra/, no log file.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import hydra
from omegaconf import DictConfig

from framework import ROOT
from framework.cli.console import file_error, print_error, run_command
from framework.cli.generate_args import validate_generate
from framework.errors import ConfigError, RnnlabError, TrackingError


def load_for_generation(cfg: Any) -> tuple[Any, Any, Any]:
    """``(model, vocab, meta)`` from ``cfg.checkpoint`` or ``cfg.run_id`` (exactly one)."""
    from framework.training.checkpoint import load_model, resolve_checkpoint

    checkpoint, run_id = cfg.get("checkpoint"), cfg.get("run_id")
    if bool(checkpoint) == bool(run_id):
        raise ConfigError("pass exactly one of checkpoint=<path to .npz> or run_id=<MLflow run id>")
    if checkpoint:
        return load_model(resolve_checkpoint(str(checkpoint)))
    from framework.tracking.tracker import (
        DEFAULT_TRACKING_URI,
        _sqlite_path,
        download_checkpoint,
        make_client,
    )

    uri = str((cfg.get("mlflow") or {}).get("tracking_uri") or DEFAULT_TRACKING_URI)
    db = _sqlite_path(uri)
    if db is not None and not db.is_file():  # do not create an empty store by accident
        raise TrackingError(f"no MLflow store at {db}; set mlflow.tracking_uri to the store "
                            f"the run was logged to")
    client = make_client(uri)
    with tempfile.TemporaryDirectory(prefix="rnnlab-generate-") as tmp:
        path = resolve_checkpoint(
            str(run_id), download=lambda rid: download_checkpoint(client, rid,
                                                                  cfg.get("artifact"), tmp))
        return load_model(path)


def run(cfg: Any) -> tuple[list[Any], Any, Any]:
    """``(outputs, vocab, checkpoint meta)`` for a composed ``generate`` config: each output a
    :class:`~framework.nn.generation.Generated` (text, log-probability, finished)."""
    from framework.nn.decoding import build_decoder
    from framework.tasks.base import task_from_meta

    args = validate_generate(cfg)  # every option's type and range, before any work
    decoder = build_decoder(cfg.get("decoder") or "sample", sampler=cfg.get("sampler")
                            or {"name": "categorical"})
    model, vocab, meta = load_for_generation(cfg)
    task = task_from_meta(meta.model.task_meta)
    if task.generates:  # another task says in one line that it does not generate
        decoder.check_vocabulary(vocab.size)
    outputs = task.generate(model, vocab, meta, args, decoder)
    return outputs, vocab, meta


def format_samples(texts: list[str], eos: str | None,
                   scores: list[float] | None = None) -> str:
    """The printed outputs (:func:`framework.nn.generation.format_generated`)."""
    from framework.nn.generation import format_generated

    return format_generated(texts, eos, scores)


# An absolute config path (as in framework/cli/train.py): "../conf" is resolved against the caller's
# module and fails when main() is called a second time in one process.
@hydra.main(config_path=str(ROOT / "conf"),
            config_name="generate", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    generate_job(cfg)


def generate_job(cfg: DictConfig) -> None:
    """Generate for a composed config and print the samples (or the MIDI files written)."""
    try:
        outputs, vocab, meta = run(cfg)
        texts = [o.text for o in outputs]
        if cfg.get("out"):  # music models: each sample as a MIDI file
            from framework.music.generated import write_generated

            lines = write_generated(texts, meta.raw, str(cfg.out))
    except OSError as exc:  # a path no check caught: one line naming it
        print_error(file_error(exc))
        sys.exit(2)
    except RnnlabError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    if cfg.get("out"):
        sys.stdout.write("\n".join(lines) + "\n")
        return
    scores = [o.score for o in outputs] if cfg.get("score") else None
    sys.stdout.write(format_samples(texts, vocab.eos, scores) + "\n")
    sys.stdout.flush()


def main() -> int:
    from framework.cli.compose import run_reading_command

    # One composition (the full app only for Hydra's flags); its errors are one line either way.
    code = run_command(lambda: run_reading_command("generate", generate_job, hydra_main))
    if code:
        sys.exit(code)
    return 0

