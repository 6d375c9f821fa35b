"""generate(): lines vs stream corpora, prompts, windows, batching, and the course's sample()."""

from __future__ import annotations

import string

import numpy as np
import pytest

import framework.nn.samplers  # noqa: F401  (registers the built-in samplers)
from framework.data.vocab import Vocab
from framework.errors import ConfigError, DataError
from framework.nn.generation import generate
from framework.nn.samplers import Categorical, Greedy

DINO_VOCAB = Vocab.from_text(string.ascii_lowercase, eos="\n")  # "\n" = 0, a..z = 1..26


class TableModel:
    """Logits depend only on the last input id: ``table[id]`` (row -1 is the zero input)."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = np.asarray(table, dtype=np.float64)
        self.calls: list[np.ndarray] = []

    def zero_state(self, batch: int):
        return [(np.zeros((batch, 1)),)]

    def step(self, ids, state):
        ids = np.asarray(ids)
        self.calls.append(ids.copy())
        return self.table[ids].copy(), state


def chain_table(vocab: Vocab, successor: dict[str, str], start: str) -> np.ndarray:
    """A table whose greedy walk goes start -> successor[start] -> ..."""
    table = np.zeros((vocab.size + 1, vocab.size))
    table[-1, vocab.stoi[start]] = 10.0
    for a, b in successor.items():
        table[vocab.stoi[a], vocab.stoi[b]] = 10.0
    return table


class SumModel:
    """Logits peak at (sum of (id + 1) since the zero state) mod V: sees its whole history."""

    def __init__(self, vocab_size: int) -> None:
        self.v = vocab_size

    def zero_state(self, batch: int):
        return [(np.zeros(batch, dtype=np.int64),)]

    def step(self, ids, state):
        total = state[0][0] + np.asarray(ids) + 1
        logits = np.zeros((len(total), self.v))
        logits[np.arange(len(total)), total % self.v] = 5.0
        return logits, [(total,)]


class CourseRNN:
    """The course's rnn_step_forward (column vectors, W @ x) behind the step/zero_state API."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.p = params

    def zero_state(self, batch: int):
        assert batch == 1
        return [(np.zeros((self.p["Waa"].shape[1], 1)),)]

    def step(self, ids, state):
        x = np.zeros((self.p["Wax"].shape[1], 1))
        if ids[0] >= 0:
            x[ids[0]] = 1
        a = np.tanh(self.p["Wax"] @ x + self.p["Waa"] @ state[0][0] + self.p["b"])
        return (self.p["Wya"] @ a + self.p["by"]).T, [(a,)]


def course_params(seed: int) -> dict[str, np.ndarray]:
    rs = np.random.RandomState(seed)
    return {"Wax": rs.randn(100, 27), "Waa": rs.randn(100, 100), "Wya": rs.randn(27, 100),
            "b": rs.randn(100, 1), "by": rs.randn(27, 1)}


def test_course_sample_reproduced_end_to_end():
    # The course's sample(params, char_to_ix, seed=0) gives "wpzzxcuagxocytfmjhtlb\n".
    out = generate(CourseRNN(course_params(24)), DINO_VOCAB, Categorical(course_seed=0),
                   length=50)
    assert out == ["wpzzxcuagxocytfmjhtlb"]


def test_course_cap_of_50_characters():
    # Versions B/C (parameters after seed 2) run into the 50-character cap.
    out = generate(CourseRNN(course_params(2)), DINO_VOCAB, Categorical(course_seed=0), length=50)
    expected_43 = [12, 17, 24, 14, 13, 9, 10, 22, 24, 6, 13, 11, 12, 6, 21, 15, 21, 14, 3, 2, 1,
                   21, 18, 24, 7, 25, 6, 25, 18, 10, 16, 2, 3, 8, 15, 12, 11, 7, 1, 12, 10, 2, 7]
    assert len(out[0]) == 50 and "\n" not in out[0]
    assert out[0][:43] == "".join(DINO_VOCAB.chars[i] for i in expected_43)


def test_course_seeded_samples_line_up_with_course_seeds():
    model = CourseRNN(course_params(24))
    many = generate(model, DINO_VOCAB, Categorical(course_seed=0), length=50, num_samples=3)
    singles = [generate(model, DINO_VOCAB, Categorical(course_seed=s), length=50)[0]
               for s in range(3)]
    assert many == singles and many[0] == "wpzzxcuagxocytfmjhtlb"


def test_lines_stop_at_eos_prompt_and_cap():
    vocab = Vocab.from_text("abc", eos="\n")
    model = TableModel(chain_table(vocab, {"a": "b", "b": "c", "c": "\n", "\n": "a"}, start="a"))
    assert generate(model, vocab, Greedy()) == ["abc"]
    assert model.calls[0].tolist() == [-1]  # the course's zero first input
    assert generate(model, vocab, Greedy(), prompt="b") == ["bc"]
    assert generate(model, vocab, Greedy(), length=2) == ["ab"]
    assert generate(model, vocab, Greedy(), length=0, prompt="c") == ["c"]
    assert generate(model, vocab, Greedy(), num_samples=0) == []
    assert generate(model, vocab, Greedy(), length=7, stop_at_eos=False) == ["abc\nabc"]


def test_stream_starts_from_newline_and_samples_exactly_length():
    vocab = Vocab.from_text("ab\n")
    model = TableModel(chain_table(vocab, {"\n": "a", "a": "b", "b": "\n"}, start="a"))
    out = generate(model, vocab, Greedy(), length=7)
    assert out == ["ab\nab\na"]
    assert model.calls[0].tolist() == [vocab.stoi["\n"]]
    model.calls.clear()
    assert generate(model, vocab, Greedy(), prompt="ba", length=2) == ["bab\n"]
    assert [c.tolist() for c in model.calls[:2]] == [[vocab.stoi["b"]], [vocab.stoi["a"]]]


def test_stream_without_newline_starts_from_first_char():
    vocab = Vocab.from_text("xyz")
    model = TableModel(chain_table(vocab, {"x": "y", "y": "z", "z": "x"}, start="x"))
    assert generate(model, vocab, Greedy(), length=4) == ["yzxy"]
    assert model.calls[0].tolist() == [0]


def _window_reference(context: list[int], length: int, window: int | None, v: int) -> list[int]:
    """What greedy decoding of SumModel gives when it sees only the last ``window`` ids."""
    out = []
    for _ in range(length):
        seen = context if window is None else context[-window:]
        nxt = sum(i + 1 for i in seen) % v
        out.append(nxt)
        context = context + [nxt]
    return out


@pytest.mark.parametrize("window", [None, 1, 3, 10])
def test_window_runs_from_zero_state_over_last_w_chars(window):
    vocab = Vocab.from_text("abcdefg")
    prompt = "gfed"
    out = generate(SumModel(vocab.size), vocab, Greedy(), prompt=prompt, length=12,
                   window=window)
    expected = _window_reference([vocab.stoi[c] for c in prompt], 12, window, vocab.size)
    assert out == [prompt + "".join(vocab.chars[i] for i in expected)]


def test_window_differs_from_full_history():
    vocab = Vocab.from_text("abcdefg")
    full = generate(SumModel(7), vocab, Greedy(), prompt="abc", length=10)
    windowed = generate(SumModel(7), vocab, Greedy(), prompt="abc", length=10, window=2)
    assert full != windowed


def test_window_with_lines_vocab_keeps_zero_start_until_it_slides_out():
    vocab = Vocab.from_text("abcde", eos="\n")
    out = generate(SumModel(vocab.size), vocab, Greedy(), prompt="", length=5, window=3,
                   stop_at_eos=False)
    expected = _window_reference([-1], 5, 3, vocab.size)
    assert out == ["".join(vocab.chars[i] for i in expected)]


def test_samples_are_batched_and_reproducible():
    vocab = Vocab.from_text("abcdef")
    rng_table = np.random.default_rng(0).standard_normal((vocab.size + 1, vocab.size))
    model = TableModel(rng_table)
    a = generate(model, vocab, Categorical(), length=30, num_samples=4,
                 rng=np.random.default_rng(7))
    assert all(c.shape == (4,) for c in model.calls)  # one step for all samples
    b = generate(TableModel(rng_table), vocab, Categorical(), length=30, num_samples=4,
                 rng=np.random.default_rng(7))
    assert a == b and len(a) == 4 and all(len(s) == 30 for s in a)
    assert len(set(a)) > 1


def test_batched_lines_samples_stop_independently():
    vocab = Vocab.from_text("ab", eos="\n")
    table = np.full((vocab.size + 1, vocab.size), 0.0)  # uniform: names of varied length
    out = generate(TableModel(table), vocab, Categorical(), length=20, num_samples=20,
                   rng=np.random.default_rng(1))
    assert all("\n" not in s and len(s) <= 20 for s in out)
    assert len({len(s) for s in out}) > 1


def test_prompt_outside_vocabulary_is_a_data_error():
    model = TableModel(np.zeros((28, 27)))
    with pytest.raises(DataError, match=r"'Q'.*lower-case"):
        generate(model, DINO_VOCAB, Greedy(), prompt="Quetz")
    with pytest.raises(DataError, match=r"'!', '7'"):
        generate(model, DINO_VOCAB, Greedy(), prompt="a7!")


def test_bad_arguments_are_config_errors():
    vocab = Vocab.from_text("ab")
    model = TableModel(np.zeros((3, 2)))
    for kwargs in ({"length": -1}, {"num_samples": -1}, {"window": 0}, {"stop_at_eos": True}):
        with pytest.raises(ConfigError):
            generate(model, vocab, Greedy(), **kwargs)


def test_with_the_real_char_rnn():
    model_module = pytest.importorskip("framework.nn.models.language_model")
    from framework.plugins import load_plugins

    load_plugins()  # the cells
    vocab = Vocab.from_text("abcdefgh", eos="\n")
    model = model_module.CharRNN("rnn", vocab.size, 16, dtype="float64")
    model.params = model.init_params(np.random.default_rng(0))
    for window in (None, 5):
        out = generate(model, vocab, Categorical(), prompt="ab", length=30, num_samples=3,
                       window=window, rng=np.random.default_rng(2))
        assert len(out) == 3 and all(s.startswith("ab") and len(s) <= 32 for s in out)
        assert all(set(s) <= set("abcdefgh") for s in out)
    greedy = generate(model, vocab, Greedy(), prompt="ab", length=30, num_samples=2)
    assert greedy[0] == greedy[1]
    # a window longer than the text sees zero-input padding first, so it is not the plain run
    lstm = model_module.CharRNN("lstm", vocab.size, 8, dtype="float64")
    lstm.params = lstm.init_params(np.random.default_rng(1))
    windowed = generate(lstm, vocab, Greedy(), prompt="ab", length=20, stop_at_eos=False,
                        window=100)
    assert windowed[0].startswith("ab") and len(windowed[0]) == 22


def test_window_left_pads_short_text_with_zero_inputs():
    # The course pads the prompt with '0' (all-zero rows, our id -1) up to the 40-char window.
    vocab = Vocab.from_text("ab")
    model = TableModel(np.zeros((vocab.size + 1, vocab.size)))
    generate(model, vocab, Greedy(), prompt="ab", length=2, window=5)
    a, b = vocab.stoi["a"], vocab.stoi["b"]
    assert [int(c[0]) for c in model.calls[:5]] == [-1, -1, -1, a, b]
    assert [int(c[0]) for c in model.calls[5:10]] == [-1, -1, a, b, a]  # greedy picks "a"
