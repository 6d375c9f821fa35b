"""``python -m framework.generate``: sample text from a checkpoint file or an MLflow run.

    python -m framework.generate checkpoint=outputs/.../checkpoints/latest.npz prompt=ab
    python -m framework.generate run_id=<id> sampler=top_k sampler.k=5 num_samples=3 length=300

Names datasets print one sample per line (as generated, lower-case); text datasets print the
prompt and its continuation, samples separated by a blank line.  Bad input (missing checkpoint,
unknown run id, prompt characters outside the vocabulary, bad options) is one line on stderr and
exit status 2.  Hydra writes no files: no output directory, no .hydra/, no log file.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from framework import ROOT
from framework.cli.console import print_error, run_command
from framework.cli.generate_args import validate_generate
from framework.errors import CheckpointError, ConfigError, RnnlabError, TrackingError


def resolve_checkpoint_path(target: str) -> Path:
    """A ``.npz`` file, or a run directory holding ``checkpoints/latest.npz`` or ``latest.npz``."""
    path = Path(target).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "latest.npz", path / "latest.npz"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"directory {path} holds no checkpoints/latest.npz; pass a .npz file")
    return path


def load_for_generation(cfg: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, vocab, meta)`` from ``cfg.checkpoint`` or ``cfg.run_id`` (exactly one)."""
    from framework.training.checkpoint import build_model_from_checkpoint, load_checkpoint

    checkpoint, run_id = cfg.get("checkpoint"), cfg.get("run_id")
    if bool(checkpoint) == bool(run_id):
        raise ConfigError("pass exactly one of checkpoint=<path to .npz> or run_id=<MLflow run id>")
    if checkpoint:
        arrays, meta = load_checkpoint(resolve_checkpoint_path(str(checkpoint)))
    else:
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
            local = download_checkpoint(client, str(run_id), cfg.get("artifact"), tmp)
            arrays, meta = load_checkpoint(local)
    model, vocab = build_model_from_checkpoint(arrays, meta)
    return model, vocab, meta


def run(cfg: Any) -> tuple[list[str], Any]:
    """``(texts, vocab)`` for a composed ``generate`` config."""
    from framework.nn.sampling import generate
    from framework.plugins import load_plugins
    from framework.registry import SAMPLERS

    load_plugins()
    args = validate_generate(cfg)  # every option's type and range, before any work
    sampler_node = OmegaConf.to_container(cfg.sampler, resolve=True) if isinstance(
        cfg.sampler, DictConfig) else dict(cfg.sampler)
    sampler = SAMPLERS.build(sampler_node)
    model, vocab, meta = load_for_generation(cfg)
    window = args.window
    if window is None:
        window = (meta.get("generate") or (meta.get("config") or {}).get("generate") or {}).get(
            "window")
    texts = generate(model, vocab, sampler, prompt=args.prompt, length=args.length,
                     num_samples=args.num_samples, window=window,
                     rng=np.random.default_rng(args.seed))
    return texts, vocab


def format_samples(texts: list[str], eos: str | None) -> str:
    if eos is not None:  # names: generation stopped at the eos, one sample per line
        return "\n".join(texts)
    return "\n\n".join(texts)


# An absolute config path (as in framework/cli/train.py): "../conf" is resolved against the caller's
# module and fails when main() is called a second time in one process.
@hydra.main(config_path=str(ROOT / "conf"),
            config_name="generate", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    try:
        texts, vocab = run(cfg)
    except RnnlabError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    sys.stdout.write(format_samples(texts, vocab.eos) + "\n")
    sys.stdout.flush()


def generate_keys() -> list[str]:
    """The keys of conf/generate.yaml and of every sampler, for did-you-mean hints."""
    from framework.cli.overrides import CONF, known_keys

    top = OmegaConf.load(CONF / "generate.yaml")
    keys = [k for k in top if k not in ("defaults", "hydra")]
    keys += [f"mlflow.{k}" for k in top.get("mlflow", {})]
    return keys + [k for k in known_keys() if k.startswith("sampler")]


def main() -> int:
    from framework.cli.overrides import precheck_overrides, run_hydra, store_plugin_configs

    def body() -> None:
        precheck_overrides(sys.argv[1:])
        store_plugin_configs()
        run_hydra(hydra_main, generate_keys)  # Hydra's own override errors become one line

    return run_command(body)

