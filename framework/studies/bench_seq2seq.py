"""The dates model's benchmark row: one seq2seq training step, rnnlab against PyTorch eager.

    python -m framework.studies.bench_seq2seq [--rounds N] [--target-s S] [--markdown]

(also a part of ``python -m framework.bench``).  The model is the ``experiment=dates`` preset's:
a bidirectional LSTM-32 encoder over the source characters, the course's additive attention
(10 tanh units), an LSTM-64 decoder reading [previous target one-hot; context], a softmax over
the target characters, teacher forcing; batch 64, global-norm clipping at 5, Adam.

* rnnlab: a :class:`~framework.training.trainer.Trainer` built from the preset's config, stepped
  with :meth:`Trainer.train_step` (feed batch, forward, backward, clip, optimizer update), the
  step ``python -m framework experiment=dates`` runs.
* PyTorch: :class:`TorchSeq2SeqLoop`, the same model in eager mode (``pack_padded_sequence``
  into a bidirectional ``nn.LSTM``, the same bridge, attention and ``nn.LSTMCell`` decoder step
  by step, cross-entropy over the counted targets, ``clip_grad_norm_``, Adam) on the same
  batches, one thread (``torch.set_num_threads``), like every rnnlab column (threadpoolctl).

Both are interleaved round after round; each figure is the median over rounds, in source/target
pairs per second.  PyTorch is only a comparison: it is never a dependency of rnnlab.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from framework import ROOT
from framework.cli.console import ArgumentParser, int_at_least

PRESET = ["experiment=dates", "mlflow.enabled=false"]


def make_dates_trainer(extra: list[str] | None = None) -> Any:
    """A Trainer of the ``experiment=dates`` preset (``extra``: further overrides)."""
    from hydra import compose, initialize_config_dir

    from framework.cli.overrides import store_plugin_configs
    from framework.tracking.protocol import NullTracker
    from framework.training.config import validate
    from framework.training.trainer import Reporter, Trainer

    store_plugin_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        rc = validate(compose(config_name="config", overrides=[*PRESET, *(extra or [])]))
    out = Path(tempfile.mkdtemp(prefix="rnnlab-bench-seq2seq-"))
    return Trainer(rc, out_dir=out, reporter=Reporter(NullTracker(), lambda _: None))


class TorchSeq2SeqLoop:
    """PyTorch eager training step of the dates model on the feed's batches (module docstring).

    Source and target ids are one-hot rows (id -1, padding or the start token, selects an
    all-zero row), as rnnlab's cells read them."""

    def __init__(self, src_vocab: int, tgt_vocab: int, feed: Any, *, encoder_hidden: int,
                 decoder_hidden: int, units: int, lr: float, max_norm: float) -> None:
        import torch

        self.torch, self.feed = torch, feed
        torch.manual_seed(0)
        nn = torch.nn
        self.encoder = nn.LSTM(src_vocab, encoder_hidden, bidirectional=True)
        feature = 2 * encoder_hidden
        self.bridge = nn.Linear(feature, decoder_hidden)
        self.W_k = nn.Linear(feature, units, bias=False)
        self.W_q = nn.Linear(decoder_hidden, units)  # its bias is the attention's b
        self.v = nn.Linear(units, 1, bias=False)
        self.decoder = nn.LSTMCell(tgt_vocab + feature, decoder_hidden)
        self.out = nn.Linear(decoder_hidden, tgt_vocab)
        modules = (self.encoder, self.bridge, self.W_k, self.W_q, self.v, self.decoder, self.out)
        self.params = [p for m in modules for p in m.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=lr)
        self.src_eye = torch.cat([torch.eye(src_vocab), torch.zeros(1, src_vocab)])
        self.tgt_eye = torch.cat([torch.eye(tgt_vocab), torch.zeros(1, tgt_vocab)])
        self.max_norm, self.tgt_vocab, self.k = max_norm, tgt_vocab, 0

    def loss(self, batch: Any) -> Any:
        torch = self.torch
        x = self.src_eye[torch.from_numpy(batch.inputs)]  # (S, B, Vs)
        lengths = torch.from_numpy(batch.lengths)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, (h_n, _) = self.encoder(packed)
        memory, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
        h = torch.tanh(self.bridge(torch.cat([h_n[0], h_n[1]], dim=1)))
        c = torch.zeros_like(h)
        keys = self.W_k(memory)  # (S, B, A)
        pad = torch.arange(x.shape[0])[:, None] >= lengths[None, :]  # (S, B)
        tokens = self.tgt_eye[torch.from_numpy(batch.targets_in)]  # (T, B, Vt)
        tops = []
        for t in range(tokens.shape[0]):
            scores = self.v(torch.tanh(keys + self.W_q(h)[None])).squeeze(2)  # (S, B)
            weights = torch.softmax(scores.masked_fill(pad, float("-inf")), dim=0)
            context = (weights[:, :, None] * memory).sum(dim=0)
            h, c = self.decoder(torch.cat([tokens[t], context], dim=1), (h, c))
            tops.append(h)
        logits = self.out(torch.stack(tops)).reshape(-1, self.tgt_vocab)
        return torch.nn.functional.cross_entropy(
            logits, torch.from_numpy(batch.targets).reshape(-1), ignore_index=-1)

    def step(self) -> int:
        batch = self.feed.batch(self.k)
        loss = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.opt.step()
        self.k += 1
        return batch.size


def torch_loop_for(trainer: Any) -> TorchSeq2SeqLoop:
    """The PyTorch reference with the sizes of a dates trainer's model, on its feed."""
    model, rc = trainer.model, trainer.rc
    attention_units = model.attention.cfg.units
    return TorchSeq2SeqLoop(model.src_vocab_size, model.tgt_vocab_size, trainer.feed,
                            encoder_hidden=model.encoder.stacks[0].hidden_size,
                            decoder_hidden=model.decoder_hidden, units=attention_units,
                            lr=rc.optimizer.lr, max_norm=rc.clip.max_norm)


def _calibrated(fn: Callable[[], int], target_s: float) -> Callable[[], float]:
    """Warm ``fn`` up (one training step, returning its pairs) and return a sampler of seconds
    per pair over enough steps to last about ``target_s``."""
    start = time.perf_counter()
    fn()
    fn()
    number = max(1, round(target_s / ((time.perf_counter() - start) / 2)))

    def sample() -> float:
        t0 = time.perf_counter()
        n = sum(fn() for _ in range(number))
        return (time.perf_counter() - t0) / n

    return sample


def run_seq2seq(rounds: int, target_s: float, use_torch: bool, log: Callable[[str], None],
                extra: list[str] | None = None) -> dict[str, Any]:
    """Training pairs/s of rnnlab (Trainer.train_step) and PyTorch on the dates model,
    interleaved, medians over ``rounds`` (``extra``: overrides of the preset)."""
    trainer = make_dates_trainer(extra)
    model = trainer.model
    row: dict[str, Any] = {
        "encoder": f"bi-lstm {model.encoder.stacks[0].hidden_size}",
        "attention": f"additive {model.attention.cfg.units}",
        "decoder": f"lstm {model.decoder_hidden}", "batch": trainer.rc.train.batch_size}
    def rnnlab_step() -> int:
        pairs = len(trainer.feed.indices(trainer.step))  # an epoch's last batch is smaller
        trainer.train_step()
        return pairs

    samplers = {"rnnlab": _calibrated(rnnlab_step, target_s)}
    if use_torch:
        ref = torch_loop_for(trainer)
        samplers["torch"] = _calibrated(ref.step, target_s)
    log(f"seq2seq (dates) row warmed up; timing {rounds} interleaved rounds")
    times: dict[str, list[float]] = {k: [] for k in samplers}
    for r in range(rounds):
        for key, sample in samplers.items():
            times[key].append(sample())
        log(f"  round {r + 1}/{rounds} done")
    for key, values in times.items():
        row[key] = 1.0 / statistics.median(values)
    return row


def seq2seq_section(quick: bool, rounds: int, target_s: float, use_torch: bool, markdown: bool,
                    threads: int, log: Callable[[str], None]) -> str:
    """What ``python -m framework.bench`` prints for the dates row: a title line and the table
    (``quick``: 300 training pairs instead of 10,000, the same model and batch), or one line
    saying why the row was skipped (the ``dates`` extra missing)."""
    from framework.errors import RnnlabError

    extra = ["dataset.n_train=300", "dataset.n_val=50"] if quick else []
    try:
        row = run_seq2seq(rounds, max(target_s, 0.5), use_torch, log, extra)
    except RnnlabError as exc:
        return f"seq2seq (dates) row skipped: {exc}"
    title = (f"training pairs/s, dates model (experiment=dates: {row['encoder']} encoder, "
             f"{row['attention']} attention, {row['decoder']} decoder, teacher forcing; forward "
             f"+ backward + clip=norm + Adam), float32, threads {threads}; median of {rounds} "
             f"interleaved rounds")
    return title + "\n" + format_seq2seq(row, markdown)


def format_seq2seq(row: dict[str, Any], markdown: bool) -> str:
    """The row as a one-line table."""
    torch_s = row.get("torch")
    head = ["encoder", "attention", "decoder", "B", "rnnlab pairs/s", "PyTorch pairs/s",
            "x torch"]
    line = [row["encoder"], row["attention"], row["decoder"], str(row["batch"]),
            f"{row['rnnlab']:,.0f}", "-" if torch_s is None else f"{torch_s:,.0f}",
            "-" if torch_s is None else f"{row['rnnlab'] / torch_s:.2f}x"]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                          "| " + " | ".join(line) + " |"])
    widths = [max(len(h), len(v)) for h, v in zip(head, line, strict=True)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*line)])


def main(argv: list[str] | None = None) -> int:
    from framework.cli.console import run_command
    from framework.studies.bench_refs import torch_available

    parser = ArgumentParser(prog="python -m framework.studies.bench_seq2seq", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int_at_least(1), default=5)
    parser.add_argument("--target-s", type=float, default=1.0,
                        help="seconds per timed sample (1.0)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def body() -> None:
        from threadpoolctl import threadpool_limits

        use_torch = torch_available()
        if use_torch:
            import torch

            torch.set_num_threads(1)
        with threadpool_limits(limits=1):
            print(seq2seq_section(False, args.rounds, args.target_s, use_torch, args.markdown,
                                  1, lambda m: print(m, file=sys.stderr, flush=True)))

    return run_command(body)


__all__ = ["TorchSeq2SeqLoop", "format_seq2seq", "make_dates_trainer", "run_seq2seq",
           "seq2seq_section", "torch_loop_for"]

if __name__ == "__main__":
    sys.exit(main())
