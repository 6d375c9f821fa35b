"""The beam-vs-greedy study's rows: a beam of width 1 gives the greedy row, a wider beam is
decoded and counted on the same names, and a checkpoint without a names or parallel dataset is
one line."""

from __future__ import annotations

import numpy as np
import pytest

from framework.data.corpora.text import lines_corpus
from framework.nn.models.language_model import CharRNN
from framework.studies.beam_vs_greedy import format_names, names_rows

NAMES = "\n".join(["abba", "abbe", "baab", "bab", "abab", "aab", "bba", "abaa", "baba", "bbab"])


def toy():
    corpus = lines_corpus("toy", NAMES, val_fraction=0.4, split_seed=0)
    model = CharRNN("lstm", corpus.vocab.size, 6)
    model.init_params(np.random.default_rng(3))
    return model, corpus


def without(row: dict, *keys: str) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


def test_a_beam_of_one_gives_the_greedy_rows():
    model, corpus = toy()
    rows = names_rows(model, corpus.vocab, corpus, 1, [0, 1, 2])
    assert [(r["prefix"], r["decoder"]) for r in rows] == [
        (k, d) for k in (0, 1, 2) for d in ("greedy", "beam 1")]
    for greedy, beam in zip(rows[::2], rows[1::2], strict=True):
        assert without(greedy, "decoder", "seconds") == without(beam, "decoder", "seconds")
    assert rows[0]["prompts"] == 1 and rows[0]["names"] == 4 and rows[0]["reference_logp"] < 0


def test_a_wider_beam_is_counted_on_the_same_names():
    model, corpus = toy()
    rows = names_rows(model, corpus.vocab, corpus, 3, [1])
    assert [r["decoder"] for r in rows] == ["greedy", "beam 3"]
    greedy, beam = rows
    assert greedy["names"] == beam["names"] == 4 and greedy["prompts"] == beam["prompts"]
    assert greedy["reference_logp"] == beam["reference_logp"]
    assert 0.0 <= beam["exact"] <= 1.0 and 0.0 <= beam["in_training"] <= 1.0
    table = format_names(rows, markdown=True).splitlines()
    assert table[0].startswith("| prompt | decoder |") and len(table) == 2 + len(rows)


def test_the_command_refuses_a_stream_checkpoint_in_one_line(tmp_path, capsys):
    from framework.studies.beam_vs_greedy import main
    from tests.tracking.test_pyfunc import make_checkpoint

    path = make_checkpoint(tmp_path / "c.npz", hidden_size=4, num_layers=1)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnlab: error:") and "\n" not in err, err
    with pytest.raises(SystemExit):
        main([str(path), "--width", "0"])
