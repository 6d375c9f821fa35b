"""The split model: CharRNN (stack + LM head) bit-identical to the pre-split code, many-to-one on
padded batches (last valid state, padding ignored), bidirectional reading, the heads' losses,
class weights, parameter naming and draw order, and one-line errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from framework.errors import ConfigError, DataError
from framework.nn.encoder import reverse_index
from framework.nn.heads import (
    ClassifyHead,
    ForecastHead,
    balanced_class_weights,
    dense_init,
)
from framework.nn.models.language_model import CharRNN
from framework.nn.models.many_to_one import SequenceClassifier, SequenceForecaster
from framework.nn.stack import RecurrentStack
from framework.plugins import load_plugins
from framework.registry import CELLS
from tests.nn import charrnn_before_split

load_plugins()
CELL_NAMES = CELLS.names()


# ------------------------------------------------------------------ lm: bit-identical to before
def _lm_batch(model: CharRNN, seed: int = 5):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(-1, 11, (13, 4))
    targets = rng.integers(-1, 11, (13, 4))
    state0 = [tuple(rng.normal(0, 0.5, (4, 7)).astype(model.dtype) for _ in s)
              for s in model.zero_state(4)]
    return inputs, targets, state0


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("layers", "dropout"), [(1, 0.0), (2, 0.3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_lm_is_bit_identical_to_the_pre_split_charrnn(cell, dtype, layers, dropout, reduction):
    model = CharRNN(cell, 11, 7, num_layers=layers, dropout=dropout, dtype=dtype)
    model.init_params(np.random.default_rng(123))
    inputs, targets, state0 = _lm_batch(model)

    def rng():
        return np.random.default_rng(77) if dropout else None

    got = model.loss_and_grads(inputs, targets, state0, reduction=reduction, dropout_rng=rng())
    ref = charrnn_before_split.loss_and_grads(model, inputs, targets, state0, reduction, rng())
    assert got[0] == ref[0] and got[1] == ref[1]
    assert list(got[2]) == list(ref[2])  # same order: clipping sums the gradients in it
    for key in ref[2]:
        assert got[2][key].dtype == ref[2][key].dtype
        assert np.array_equal(got[2][key], ref[2][key]), key
    for a, b in zip(got[3], ref[3], strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# Computed with the pre-split CharRNN (V 11, H 7, T 13, B 4, zero initial state, init seed 123,
# batch seed 5, dropout seed 77): loss sum, token count, sum |grad| per parameter (in gradient
# order) and sum |final state|.  Tolerances allow other BLAS builds' rounding.
REFERENCE = {
    "rnn/float64/L1/mean": [114.33120097872316, 47, {
        "out.W": 0.8873848113533951, "out.b": 0.5706686412259524,
        "layers.0.W_x": 0.9995055676241645, "layers.0.W_h": 0.873342632075521,
        "layers.0.b": 0.41950033268077674}, 10.741554811958444],
    "lstm/float32/L2/mean": [113.01374818198383, 47, {
        "out.W": 0.2058541658152535, "out.b": 0.520553620532155,
        "layers.1.W_x": 0.24679374866980197, "layers.1.W_h": 0.10320035366157754,
        "layers.1.b": 0.4210356948278786, "layers.0.W_x": 0.18820005197676437,
        "layers.0.W_h": 0.07153004863789647, "layers.0.b": 0.1574513293162454},
        14.45790487783961],
    "gru/float64/L2/sum": [114.03516595716965, 47, {
        "out.W": 18.543956059956688, "out.b": 25.03489573498299,
        "layers.1.W_x": 14.605568718891544, "layers.1.W_h": 8.149054852494949,
        "layers.1.b": 12.830612048958052, "layers.0.W_x": 23.503129949648702,
        "layers.0.W_h": 7.207445954457272, "layers.0.b": 10.12306612560933},
        7.58553647720648],
    "lstm/float64/L1/sum": [112.7718174005272, 47, {
        "out.W": 13.598303559421046, "out.b": 24.278617745165697,
        "layers.0.W_x": 14.87057160207453, "layers.0.W_h": 7.004546575303868,
        "layers.0.b": 11.211934118149616}, 8.101204155269105],
    "gru/float32/L1/mean": [110.51132606342435, 47, {
        "out.W": 0.42119374542380683, "out.b": 0.5093353879638016,
        "layers.0.W_x": 0.5258800009119113, "layers.0.W_h": 0.11967418213339442,
        "layers.0.b": 0.28401992068393156}, 4.091057140380144],
}


@pytest.mark.parametrize("case", list(REFERENCE))
def test_lm_matches_numbers_recorded_before_the_split(case: str) -> None:
    cell, dtype, layers, reduction = case.split("/")
    L = int(layers[1:])
    dropout = 0.3 if L > 1 else 0.0
    model = CharRNN(cell, 11, 7, num_layers=L, dropout=dropout, dtype=dtype)
    model.init_params(np.random.default_rng(123))
    rng = np.random.default_rng(5)
    inputs, targets = rng.integers(-1, 11, (13, 4)), rng.integers(-1, 11, (13, 4))
    loss, n, grads, stateT = model.loss_and_grads(
        inputs, targets, None, reduction=reduction,
        dropout_rng=np.random.default_rng(77) if dropout else None)
    ref_loss, ref_n, ref_grads, ref_state = REFERENCE[case]
    rtol = 1e-5 if dtype == "float32" else 1e-11
    assert n == ref_n and list(grads) == list(ref_grads)
    assert loss == pytest.approx(ref_loss, rel=rtol)
    for key, value in ref_grads.items():
        assert float(np.abs(grads[key]).sum(dtype=np.float64)) == pytest.approx(value, rel=rtol)
    got_state = float(sum(np.abs(s).sum(dtype=np.float64) for st in stateT for s in st))
    assert got_state == pytest.approx(ref_state, rel=rtol)


# ------------------------------------------------------------------ padded batches
def _classifier(cell, bidirectional, layers=2, dtype="float64", seed=0, dropout=0.0):
    m = SequenceClassifier(cell, 6, 4, 5, num_layers=layers, dropout=dropout, dtype=dtype,
                           bidirectional=bidirectional)
    m.init_params(np.random.default_rng(seed))
    for v in m.params.values():  # nonzero biases
        v += np.random.default_rng(seed + 1).normal(0, 0.2, v.shape).astype(v.dtype)
    return m


LENGTHS = np.array([7, 3, 1, 5])
LABELS = np.array([1, 3, 0, 2])


def _ids(seed: int, lengths=LENGTHS, T: int = 7, pad=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, (T, len(lengths)))
    padded = np.arange(T)[:, None] >= lengths[None, :]
    x[padded] = -1 if pad is None else rng.integers(-1, 6, padded.sum())
    return x


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_padding_content_changes_nothing(cell: str, bidirectional: bool) -> None:
    """Whatever the padded steps hold (-1 or other ids), loss, probabilities and gradients are
    bit-identical: the gradient reaching the padded steps is exactly zero."""
    m = _classifier(cell, bidirectional, dropout=0.25)
    runs = [m.loss_and_grads(_ids(1, pad=pad), LENGTHS, LABELS, class_weights=[1, 2, 3, 4],
                             dropout_rng=np.random.default_rng(4)) for pad in (None, "ids")]
    a, b = runs
    assert a.loss == b.loss and np.array_equal(a.output, b.output)
    for key in a.grads:
        assert np.array_equal(a.grads[key], b.grads[key]), key


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_padded_batch_equals_each_sequence_alone(cell: str, bidirectional: bool) -> None:
    """The features of a right-padded batch are those of every sequence run alone, unpadded:
    the last valid state is used and the backward stack does not read the padding first."""
    m = _classifier(cell, bidirectional)
    x = _ids(2)
    feats = m.features(x, LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone = m.features(x[:n, b : b + 1], None)
        np.testing.assert_allclose(feats[b : b + 1], alone, rtol=1e-12, atol=1e-14)
    if bidirectional:
        # the backward half is a forward stack with the bwd.* weights over the reversed sequence
        stack = RecurrentStack(m.cell, 6, m.num_layers, prefix="bwd.layers.")
        for b, n in enumerate(LENGTHS):
            rev = x[:n, b : b + 1][::-1].copy()
            top, _, _ = stack.forward(m.params, rev, stack.zero_state(1, np.float64))
            np.testing.assert_allclose(feats[b, 5:], top[-1, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_forecast_padding_is_ignored_and_gets_zero_gradient(cell: str) -> None:
    m = SequenceForecaster(cell, 2, 3, 4, num_layers=2, dtype="float64", bidirectional=True)
    m.init_params(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3, 2))
    lengths = np.array([6, 2, 4])
    y = rng.normal(size=(3, 3, 2))
    pad = np.arange(6)[:, None] >= lengths[None, :]
    outs = []
    for fill in (0.0, 1e3):
        xf = x.copy()
        xf[pad] = fill
        feats, tape = m._encode(xf, lengths, None)
        head = m.head.loss_and_grads(m.params, feats, y)
        grads, dx = m.encoder.backward(m.params, tape, head.dfeats)
        assert not np.any(dx[pad]) and np.any(dx[~pad])
        outs.append((head.loss, grads))
    assert outs[0][0] == outs[1][0]
    for key in outs[0][1]:
        assert np.array_equal(outs[0][1][key], outs[1][1][key]), key


def test_reverse_index_reverses_within_length_and_is_its_own_inverse() -> None:
    idx = reverse_index(np.array([3, 1, 4]), 4)
    assert idx.T.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    cols = np.arange(3)[None, :]
    assert np.array_equal(idx[idx, cols], np.broadcast_to(np.arange(4)[:, None], (4, 3)))


# ------------------------------------------------------------------ naming and draw order
@pytest.mark.parametrize("bidirectional", [False, True])
def test_parameter_names_and_init_draw_order(bidirectional: bool) -> None:
    m = SequenceClassifier("lstm", 6, 4, 5, num_layers=2, init="xavier", dtype="float64",
                           bidirectional=bidirectional)
    params = m.init_params(np.random.default_rng(42))
    stacks = ["fwd.layers.", "bwd.layers."] if bidirectional else ["layers."]
    expected_names = [f"{s}{i}.{k}" for s in stacks for i in range(2) for k in ("W_x", "W_h", "b")]
    assert list(params) == [*expected_names, "head.W", "head.b"]
    rng = np.random.default_rng(42)  # the same draws by hand: stacks in order, then the head
    for s in stacks:
        for i in range(2):
            for k, v in m.cell.init_params(6 if i == 0 else 5, rng, "float64").items():
                assert np.array_equal(params[f"{s}{i}.{k}"], v)
    assert np.array_equal(params["head.W"], dense_init(rng, 5 * len(stacks), 4, "xavier"))
    assert params["head.W"].shape == (5 * len(stacks), 4) and not params["head.b"].any()


def test_forecaster_names_and_shapes() -> None:
    m = SequenceForecaster("gru", 3, 4, 6, dtype="float32")
    p = m.init_params(np.random.default_rng(0))
    assert list(p) == ["layers.0.W_x", "layers.0.W_h", "layers.0.b", "head.W", "head.b"]
    assert p["head.W"].shape == (6, 12) and p["layers.0.W_x"].shape == (3, 18)
    out = m.loss_and_grads(np.zeros((5, 2, 3)), None, np.zeros((2, 4, 3)))
    assert out.output.shape == (2, 4, 3) and out.output.dtype == np.float32
    assert all(g.dtype == np.float32 for g in out.grads.values())
    assert m.predict(np.zeros((5, 2, 3))).dtype == np.float64


# ------------------------------------------------------------------ head losses
def _head_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    head = ClassifyHead(4, 3)
    params = head.init_params(rng, "float64")
    params["head.b"] += rng.normal(size=3)
    feats = rng.normal(size=(6, 4))
    labels = np.array([0, 2, 1, 1, -1, 0])
    return head, params, feats, labels


def test_weighted_cross_entropy_is_the_weighted_mean() -> None:
    """sum_i w[y_i] * nll_i / sum_i w[y_i], as PyTorch's CrossEntropyLoss(weight=w)."""
    head, params, feats, labels = _head_case()
    w = np.array([0.3, 2.0, 1.1])
    out = head.loss_and_grads(params, feats, labels, class_weights=w)
    z = feats @ params["head.W"] + params["head.b"]
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = labels >= 0
    nll = -logp[rows, labels[rows]]
    ww = w[labels[rows]]
    assert out.loss == pytest.approx((ww * nll).sum() / ww.sum(), rel=1e-13)
    assert out.total == pytest.approx((ww * nll).sum(), rel=1e-13)
    assert out.count == pytest.approx(ww.sum(), rel=1e-15)
    np.testing.assert_allclose(out.output, np.exp(logp), rtol=1e-13)
    # uniform weights are the plain mean, the same gradients
    plain = head.loss_and_grads(params, feats, labels)
    scaled = head.loss_and_grads(params, feats, labels, class_weights=[2.0, 2.0, 2.0])
    assert plain.count == 5 and scaled.loss == pytest.approx(plain.loss, rel=1e-14)
    for key in plain.grads:
        np.testing.assert_allclose(scaled.grads[key], plain.grads[key], rtol=1e-13)


def test_ignored_rows_and_sums_over_batches() -> None:
    head, params, feats, labels = _head_case(1)
    w = [1.0, 3.0, 0.5]
    full = head.loss_and_grads(params, feats, labels, class_weights=w)
    keep = labels >= 0
    dropped = head.loss_and_grads(params, feats[keep], labels[keep], class_weights=w)
    assert full.loss == pytest.approx(dropped.loss, rel=1e-14)
    for key in full.grads:
        np.testing.assert_allclose(full.grads[key], dropped.grads[key], rtol=1e-13)
    assert not full.dfeats[~keep].any()
    halves = [head.loss_and_grads(params, feats[s], labels[s], class_weights=w, need_grads=False)
              for s in (slice(0, 3), slice(3, 6))]
    assert sum(h.total for h in halves) == pytest.approx(full.total, rel=1e-14)
    assert sum(h.count for h in halves) == pytest.approx(full.count, rel=1e-15)
    summed = head.loss_and_grads(params, feats, labels, class_weights=w, reduction="sum")
    assert summed.loss == pytest.approx(full.total, rel=1e-15)
    nothing = head.loss_and_grads(params, feats, np.full(6, -1))
    assert nothing.loss == 0.0 and nothing.count == 0
    assert not any(g.any() for g in nothing.grads.values())


def test_balanced_class_weights() -> None:
    labels = np.array([0, 0, 0, 0, 1, 2, 2, -1])
    w = balanced_class_weights(labels, 3)
    np.testing.assert_allclose(w, [7 / (3 * 4), 7 / 3, 7 / (3 * 2)], rtol=1e-15)
    with pytest.raises(DataError, match="class id"):
        balanced_class_weights(np.array([0, 2]), 3)


def test_forecast_head_is_mean_squared_error() -> None:
    rng = np.random.default_rng(0)
    head = ForecastHead(3, 2, 1)
    params = head.init_params(rng, "float64")
    feats, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))  # (B, horizon) when D == 1
    out = head.loss_and_grads(params, feats, y)
    pred = feats @ params["head.W"] + params["head.b"]
    assert out.loss == pytest.approx(((pred - y) ** 2).mean(), rel=1e-14)
    assert out.count == 8 and out.output.shape == (4, 2, 1)
    np.testing.assert_allclose(out.grads["head.b"], 2 * (pred - y).sum(axis=0) / 8, rtol=1e-13)


def test_seeded_runs_are_bit_identical() -> None:
    runs = []
    for _ in range(2):
        m = _classifier("lstm", True, dtype="float32", dropout=0.3, seed=3)
        runs.append(m.loss_and_grads(_ids(5), LENGTHS, LABELS, class_weights=[1, 2, 1, 1],
                                     dropout_rng=np.random.default_rng(8)))
    a, b = runs
    assert a.loss == b.loss
    assert all(np.array_equal(a.grads[k], b.grads[k]) for k in a.grads)
    assert all(g.dtype == np.float32 for g in a.grads.values())
    ev = m.evaluate(_ids(5), LENGTHS, LABELS)
    assert ev.grads == {} and ev.output.dtype == np.float32
    np.testing.assert_allclose(m.predict_proba(_ids(5), LENGTHS), ev.output, rtol=1e-6)


# ------------------------------------------------------------------ one-line errors
def _one_line(excinfo: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(excinfo.value)


def test_only_a_task_that_may_read_both_ways_takes_a_bidirectional_stack() -> None:
    from types import SimpleNamespace

    from framework.registry import TASKS

    both = SimpleNamespace(model=SimpleNamespace(bidirectional=True))
    one = SimpleNamespace(model=SimpleNamespace(bidirectional=False))
    for name, kind in (("lm", "lines"), ("forecast", "series")):
        corpus = SimpleNamespace(kind=kind, name="x")
        with pytest.raises(ConfigError, match="bidirectional=true does not fit") as excinfo:
            TASKS.get(name)().check(both, corpus)
        _one_line(excinfo)
        TASKS.get(name)().check(one, corpus)
    TASKS.get("classify")().check(both, SimpleNamespace(kind="labelled", name="x"))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"lengths": np.array([7, 0, 1, 5])}, DataError, "lengths"),
    ({"lengths": np.array([8, 3, 1, 5])}, DataError, "lengths"),
    ({"lengths": np.array([7, 3, 1])}, DataError, "lengths"),
    ({"lengths": np.array([7.0, 3, 1, 5])}, DataError, "lengths"),
    ({"labels": np.array([1, 4, 0, 2])}, DataError, "labels"),
    ({"labels": np.array([1, 3, 0])}, DataError, "labels"),
    ({"inputs": np.full((7, 4), 6)}, DataError, "inputs"),
    ({"class_weights": [1.0, 2.0]}, ConfigError, "class_weights"),
    ({"class_weights": [1.0, -2.0, 1.0, 1.0]}, ConfigError, "class_weights"),
    ({"reduction": "avg"}, ConfigError, "reduction"),
])
def test_bad_classifier_input_is_a_one_line_error(kwargs, error, match) -> None:
    m = _classifier("rnn", False, layers=1)
    args = {"inputs": _ids(0), "lengths": LENGTHS, "labels": LABELS, **kwargs}
    extra = {k: args.pop(k) for k in ("class_weights", "reduction") if k in args}
    with pytest.raises(error, match=match) as excinfo:
        m.loss_and_grads(args["inputs"], args["lengths"], args["labels"], **extra)
    _one_line(excinfo)


def test_bad_forecaster_input_is_a_one_line_error() -> None:
    m = SequenceForecaster("gru", 2, 3, 4, dtype="float64")
    with pytest.raises(ConfigError, match="init_params"):
        m.predict(np.zeros((4, 1, 2)))
    m.init_params(np.random.default_rng(0))
    x = np.zeros((4, 2, 2))
    cases = [
        (np.zeros((4, 2, 3)), np.zeros((2, 3, 2)), "inputs"),
        (np.full((4, 2, 2), np.nan), np.zeros((2, 3, 2)), "NaN"),
        (x, np.zeros((2, 2, 2)), "targets"),
        (x, np.full((2, 3, 2), np.inf), "targets"),
    ]
    for inputs, targets, match in cases:
        with pytest.raises(DataError, match=match) as excinfo:
            m.loss_and_grads(inputs, None, targets)
        _one_line(excinfo)


def test_recursive_forecast_feeds_its_predictions_back() -> None:
    m = SequenceForecaster("rnn", 1, 2, 3, dtype="float64")
    m.init_params(np.random.default_rng(0))
    history = np.random.default_rng(1).normal(size=9)
    got = m.recursive_forecast(history, 5, window=4)
    series = list(history)
    while len(series) < 9 + 5:  # by hand: predict 2, append both, slide the window
        series.extend(m.predict(np.array(series[-4:])[:, None, None])[0, :, 0])
    np.testing.assert_allclose(got[:, 0], series[9:14], rtol=1e-14)
    assert got.shape == (5, 1)
    with pytest.raises(DataError, match="history"):
        m.recursive_forecast(history[:3], 2, window=4)
