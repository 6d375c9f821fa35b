"""Task corpora and feeds: labelled texts (names), series (sunspots, co2, csv), their splits,
missing values, scaling, downloads, and batches that are pure functions of the step."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from framework.data.corpora.labelled import fold_ascii, labelled_corpus
from framework.data.corpora.series import handle_missing, series_corpus
from framework.data.feeds.labelled import ClassifyFeed, pad_texts, reverse_padded
from framework.data.feeds.series import ForecastFeed, recursive_forecast
from framework.data.files.fetch import cache_dir
from framework.errors import ConfigError, DataError
from framework.plugins import load_folder
from framework.registry import DATASETS
from tests.conftest import load_dataset, skip_or_fail

REPO = Path(__file__).resolve().parents[2]
load_folder(REPO / "datasets")
TASK_DATASETS = ["names", "labelled_textfile", "sunspots", "co2", "csv_series"]


def data_file(name: str) -> Path:
    """A file of the shared data directory, or skip the test naming it (fail it in CI)."""
    d = os.environ.get("RNNLAB_DATA_DIR")
    path = Path(d) / name if d else None
    if path is None or not path.is_file():
        skip_or_fail(f"needs {name}: it is not in RNNLAB_DATA_DIR={d!r}; set it to the shared "
                     f"data folder")
    return path


@pytest.fixture(scope="module")
def names():
    data_file("names/Russian.txt")
    return load_dataset("names")


@pytest.fixture(scope="module")
def co2():
    data_file("co2.csv")
    return load_dataset("co2")


# ------------------------------------------------------------------------------ names


def test_names_counts_and_split(names):
    assert names.kind == "labelled" and names.n_classes == 18
    assert names.classes == tuple(sorted(names.classes)) and "Russian" in names.classes
    m = names.metadata
    assert (m["n_pairs"], m["n_unique_texts"], m["n_multi_label_texts"]) == (18012, 17450, 469)
    assert (names.n_train, names.n_val) == (16211, 1801)
    assert m["n_duplicates"] == 20050 - 18012
    # The split is by distinct name: no name (under any language) is on both sides.
    assert not set(names.train_texts) & set(names.val_texts)
    assert len(set(names.val_texts)) == 1745  # round(0.1 * 17450)
    pairs = list(zip(names.train_texts + names.val_texts,
                     np.concatenate([names.train_labels, names.val_labels]).tolist(),
                     strict=True))
    assert len(set(pairs)) == len(pairs)  # de-duplicated
    assert [names.vocab.decode(x) for x in names.val[:3]] == names.val_texts[:3]


def test_names_class_counts(names):
    train, val = names.class_counts("train"), names.class_counts("val")
    assert train == {"Arabic": 99, "Chinese": 221, "Czech": 459, "Dutch": 249, "English": 3310,
                     "French": 250, "German": 627, "Greek": 179, "Irish": 192, "Italian": 635,
                     "Japanese": 886, "Korean": 78, "Polish": 128, "Portuguese": 67,
                     "Russian": 8412, "Scottish": 96, "Spanish": 261, "Vietnamese": 62}
    assert val["Russian"] == 928 and sum(val.values()) == 1801
    w = names.class_weights("balanced")
    assert w[names.classes.index("Russian")] == pytest.approx(16211 / (18 * 8412))
    assert np.allclose(names.class_weights("none"), 1.0)
    with pytest.raises(ConfigError, match="balanced"):
        names.class_weights("inverse")


def test_names_keep_utf8_unless_ascii(names):
    every = set(names.train_texts) | set(names.val_texts)
    assert {"Ślązak", "Marszałek", "Müller"} <= every and {"ß", "é", "Ś"} <= set(names.vocab.chars)
    folded = load_dataset("names", ascii=True)
    assert all(c.isascii() for c in folded.vocab.chars)
    assert {"Slazak", "Marszalek", "Muller"} <= set(folded.train_texts) | set(folded.val_texts)
    assert folded.metadata["ascii"] is True and not set(folded.train_texts) & set(folded.val_texts)


def test_fold_ascii():
    assert fold_ascii("Müller") == "Muller"
    assert fold_ascii("Śmigielski Groß Łukasz") == "Smigielski Gross Lukasz"
    assert fold_ascii("Nguyễn") == "Nguyen" and fold_ascii("日本") == ""


def test_dedupe_then_split_by_distinct_text():
    texts = ["ab", "ab", "ab", "cd", "ef", "gh", "ij", "kl", "", "mn", "op"]
    labels = ["x", "x", "y", "x", "y", "x", "y", "x", "y", "x", "y"]
    c = labelled_corpus("t", texts, labels, val_fraction=0.3, split_seed=3)
    assert c.metadata["n_duplicates"] == 1 and c.metadata["n_empty"] == 1
    assert c.n_train + c.n_val == 9  # 11 texts - 1 empty - 1 duplicate pair
    assert len(set(c.val_texts)) == 2  # round(0.3 * 8 distinct texts)
    assert not set(c.train_texts) & set(c.val_texts)
    # "ab" has two labels; both pairs are on the same side.
    side = [("ab" in c.train_texts), ("ab" in c.val_texts)]
    assert side.count(True) == 1
    again = labelled_corpus("t", texts, labels, val_fraction=0.3, split_seed=3)
    assert again.val_texts == c.val_texts  # fixed seed, fixed split
    with pytest.raises(DataError, match="at least 2 labels"):
        labelled_corpus("t", ["a", "b"], ["x", "x"], val_fraction=0.0)
    with pytest.raises(DataError, match="lower dataset.val_fraction"):
        labelled_corpus("t", ["a", "b"], ["x", "y"], val_fraction=0.9)


def test_labelled_textfile_folder_and_tsv(tmp_path):
    folder = tmp_path / "langs"
    folder.mkdir()
    (folder / "fr.txt").write_text("Éloïse\nDupont\n\nDupont\n", encoding="utf-8")
    (folder / "de.txt").write_text("Müller\nSchmidt\n", encoding="utf-8")
    c = load_dataset("labelled_textfile", path=str(folder), val_fraction=0.0)
    assert c.classes == ("de", "fr") and c.n_train == 4
    assert c.class_counts() == {"de": 2, "fr": 2} and "É" in c.vocab.chars
    tsv = tmp_path / "data.tsv"
    tsv.write_text("text\tlabel\ngreat film\tpos\nawful\tneg\nfine\tpos\n", encoding="utf-8")
    t = load_dataset("labelled_textfile", path=str(tsv), val_fraction=0.0, lower=True)
    assert t.classes == ("neg", "pos") and t.train_texts == ["great film", "awful", "fine"]
    assert t.train_labels.tolist() == [1, 0, 1]
    tsv.write_text("great film\tpos\nno label here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 has 1 tab-separated field"):
        load_dataset("labelled_textfile", path=str(tsv))
    (folder / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty.txt has no non-empty lines"):
        load_dataset("labelled_textfile", path=str(folder))
    with pytest.raises(ConfigError, match="set dataset.path"):
        DATASETS.build({"name": "labelled_textfile"})
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("labelled_textfile", path=str(tmp_path / "nope"))
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("names", path=str(tsv))


# ------------------------------------------------------------------------------ series


def test_sunspots():
    data_file("sunspots.csv")
    s = load_dataset("sunspots")
    assert s.kind == "series" and s.values.shape == (309, 1) and s.values.dtype == np.float64
    assert (s.n_train, s.n_val, s.n_missing) == (247, 62, 0)
    assert s.times[0] == 1700 and s.times[-1] == 2008 and s.columns == ("SUNACTIVITY",)
    assert s.values[:3, 0].tolist() == [5.0, 11.0, 16.0]


def test_co2_missing_values(co2):
    assert co2.values.shape == (2284, 1) and co2.n_missing == 59 and co2.missing == "interpolate"
    assert (co2.n_train, co2.n_val) == (1827, 457)
    assert not np.isnan(co2.values).any() and int((~co2.observed).sum()) == 59
    assert co2.times[0] == np.datetime64("1958-03-29")
    # The first gap (1958-05-10) lies on the line, in time, between its observed neighbours.
    gap = np.flatnonzero(~co2.observed)[0]
    lo, hi = gap - 1, gap + 1
    while not co2.observed[hi]:
        hi += 1
    t = co2.times.astype("datetime64[D]").astype(float)
    expected = np.interp(t[gap], [t[lo], t[hi]], co2.values[[lo, hi], 0])
    assert co2.values[gap, 0] == pytest.approx(expected)
    dropped = load_dataset("co2", missing="drop")
    assert dropped.values.shape == (2225, 1) and dropped.n_missing == 59
    assert dropped.metadata["n_dropped"] == 59 and len(dropped.times) == 2225
    with pytest.raises(DataError, match=r"59 missing value\(s\).*dataset.missing=interpolate"):
        load_dataset("co2", missing="error")
    with pytest.raises(ConfigError, match="missing"):
        load_dataset("co2", missing="zero")


def test_interpolation_is_linear_in_time():
    v = np.array([[0.0], [np.nan], [3.0], [np.nan]])
    filled, _, observed = handle_missing(v, np.array([0.0, 1.0, 3.0, 4.0]), "interpolate")
    assert filled[:, 0].tolist() == [0.0, 1.0, 3.0, 3.0]  # the edge holds the last value
    assert observed.tolist() == [True, False, True, False]
    by_index, _, _ = handle_missing(v, None, "interpolate")
    assert by_index[1, 0] == 1.5


def test_scaling_statistics_come_from_the_training_part_only():
    values = np.arange(10, dtype=np.float64) ** 2
    a = series_corpus("s", values, columns=["v"], val_fraction=0.3)
    b = series_corpus("s", np.concatenate([values[:7], [1e6, -1e6, 5.0]]), columns=["v"],
                      val_fraction=0.3)
    assert a.n_train == 7 and a.mean[0] == values[:7].mean() and a.std[0] == values[:7].std()
    assert a.mean == b.mean and a.std == b.std
    assert np.allclose(a.unscale(a.scale(a.values)), a.values)
    assert abs(a.scale(a.train).mean()) < 1e-12
    with pytest.raises(DataError, match="too few"):
        series_corpus("s", [1.0, 2.0], columns=["v"], val_fraction=0.5)
    with pytest.raises(DataError, match="constant"):
        series_corpus("s", [1.0, 1.0, 1.0, 5.0], columns=["v"], val_fraction=0.25)


def csv_series(tmp_path, text: str, **options):
    path = tmp_path / "s.csv"
    path.write_text(text, encoding="utf-8")
    return load_dataset("csv_series", path=str(path), **options)


def test_csv_series(tmp_path):
    c = csv_series(tmp_path, "day,temp,other\n2024-01-01,1.5,x\n2024-01-02,NA,y\n"
                   "2024-01-04,4.5,z\n2024-01-05,5,w\n2024-01-06,6,w\n",
                   column="temp", time_column="day", val_fraction=0.2)
    assert c.values[:, 0].tolist() == [1.5, 2.5, 4.5, 5.0, 6.0] and c.n_missing == 1
    assert (c.n_train, c.n_val) == (4, 1) and c.times.dtype.kind == "M"
    t = csv_series(tmp_path, "t;y\n1;10\n2;20\n4;40\n", column="y", time_column="t",
                   delimiter=";", val_fraction=0.0)
    assert t.values[:, 0].tolist() == [10.0, 20.0, 40.0]
    f = csv_series(tmp_path, "d,y\n20200101,1\n20200108,\n20200115,3\n20200122,2\n",
                   column="y", time_column="d", time_format="%Y%m%d")
    assert f.values[1, 0] == 2.0


@pytest.mark.parametrize("text, options, match", [
    ("a,b\n1,2\n", {"column": "c"}, r"no column 'c'; its columns are 'a', 'b'; set dataset.column"),
    ("a,b\n1,2\n3,x\n", {"column": "b"}, r"line 3: 'x' in column 'b' is not a number"),
    ("a\n1\n", {"column": "a"}, "too few"),
    ("a\n", {"column": "a"}, "no data rows"),
    ("a,b\n1,2\n3\n", {"column": "a"}, "line 3 has 1 field"),
    ("a\n1\ninf\n2\n", {"column": "a"}, "not a finite number"),
    ("t,a\n2,1\n1,2\n3,3\n", {"column": "a", "time_column": "t"}, "not increasing"),
    ("t,a\nmonday,1\n", {"column": "a", "time_column": "t"}, "not a number or an ISO 8601"),
])
def test_csv_series_errors(tmp_path, text, options, match):
    with pytest.raises(DataError, match=match) as info:
        csv_series(tmp_path, text, **options)
    assert "\n" not in str(info.value)


def test_csv_series_needs_path_and_column(tmp_path):
    with pytest.raises(ConfigError, match="set dataset.path"):
        DATASETS.build({"name": "csv_series", "column": "y"})
    with pytest.raises(ConfigError, match="set dataset.column"):
        DATASETS.build({"name": "csv_series", "path": str(tmp_path / "x.csv")})


@pytest.mark.parametrize("name", TASK_DATASETS)
def test_config_files_match_schemas(name):
    node = yaml.safe_load((REPO / "conf" / "dataset" / f"{name}.yaml").read_text())
    assert node["name"] == name
    assert set(node) == set(DATASETS.schema(name).__dataclass_fields__)
    assert DATASETS.validate(node) == DATASETS.schema(name)(**node)


def test_pinned_sources_match_shared_data():
    sources = [*DATASETS.get("names").sources, DATASETS.get("sunspots").source,
               DATASETS.get("co2").source]
    assert len(sources) == 20
    provenance = data_file("PROVENANCE.md").read_text()
    for s in sources:
        assert s.url.startswith("https://raw.githubusercontent.com/") and s.sha256 in provenance
        assert hashlib.sha256(data_file(s.filename).read_bytes()).hexdigest() == s.sha256


# ------------------------------------------------------------------------------ downloads


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_names_download_into_a_cache_subfolder(server, tmp_path, monkeypatch):
    www, url = server
    files = {"Alpha": "Anna\nÅsa\n".encode(), "Beta": b"Bob\nBen\nAnna\n"}
    sources = []
    for lang, payload in files.items():
        (www / f"{lang}.txt").write_bytes(payload)
        sources.append(dataclasses.replace(DATASETS.get("names").sources[0],
                                           filename=f"names/{lang}.txt", url=f"{url}/{lang}.txt",
                                           sha256=hashlib.sha256(payload).hexdigest()))
    monkeypatch.setattr(DATASETS.get("names"), "sources", tuple(sources))
    monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    c = load_dataset("names", val_fraction=0.0)
    assert c.classes == ("Alpha", "Beta") and c.n_train == 5 and "Å" in c.vocab.chars
    assert sorted(p.name for p in (cache_dir() / "names").iterdir()) == ["Alpha.txt", "Beta.txt"]
    (www / "Alpha.txt").unlink()  # the second load reads the verified cache
    assert load_dataset("names", val_fraction=0.0).n_train == 5


def test_series_download(server, tmp_path, monkeypatch):
    www, url = server
    payload = b'"YEAR","SUNACTIVITY"\n1700,5\n1701,11\n1702,16\n1703,23\n1704,36\n'
    (www / "sunspots.csv").write_bytes(payload)
    cls = DATASETS.get("sunspots")
    monkeypatch.setattr(cls, "source", dataclasses.replace(
        cls.source, url=f"{url}/sunspots.csv", sha256=hashlib.sha256(payload).hexdigest()))
    monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    s = load_dataset("sunspots")
    assert s.values[:, 0].tolist() == [5, 11, 16, 23, 36] and (s.n_train, s.n_val) == (4, 1)
    assert (tmp_path / "cache" / "sunspots.csv").read_bytes() == payload


# ------------------------------------------------------------------------------ feeds


def small_labelled():
    texts = [f"{a}{b}" * (1 + i % 3) for i, (a, b) in enumerate(zip("abcdefghij", "klmnopqrst",
                                                                     strict=True))]
    return labelled_corpus("t", texts, ["x", "y"] * 5, val_fraction=0.3)


def test_classify_feed_is_a_pure_function_of_the_step():
    corpus = small_labelled()
    a = ClassifyFeed(corpus, batch_size=3, seed=5)
    b = ClassifyFeed(corpus, batch_size=3, seed=5)
    order = [7, 0, 3, 7, 2]
    first = {k: a.batch(k) for k in order}
    for k in reversed(order):
        x, y = first[k], b.batch(k)
        assert np.array_equal(x.inputs, y.inputs) and np.array_equal(x.labels, y.labels)
    assert a.steps_per_epoch == 3  # 7 training texts, batches of 3, 3, 1
    seen = np.concatenate([a.indices(k) for k in range(3)])
    assert sorted(seen.tolist()) == list(range(7))
    assert not np.array_equal(a.indices(0), a.indices(3)) or not np.array_equal(
        a.indices(1), a.indices(4))  # reshuffled every epoch
    other = ClassifyFeed(corpus, batch_size=3, seed=6)
    assert any(not np.array_equal(a.indices(k), other.indices(k)) for k in range(3))


def test_classify_batches_are_padded_with_lengths_and_labels():
    corpus = small_labelled()
    feed = ClassifyFeed(corpus, batch_size=4, seed=0)
    batch = feed.batch(0)
    idx = feed.indices(0)
    assert batch.inputs.dtype == np.int64 and batch.inputs.shape == (max(batch.lengths), 4)
    for b, j in enumerate(idx):
        n = batch.lengths[b]
        assert corpus.vocab.decode(batch.inputs[:n, b]) == corpus.train_texts[j]
        assert (batch.inputs[n:, b] == -1).all()
        assert batch.labels[b] == corpus.train_labels[j]
    val = list(feed.val_batches())
    assert sum(v.size for v in val) == corpus.n_val
    assert np.concatenate([v.labels for v in val]).tolist() == corpus.val_labels.tolist()
    with pytest.raises(ConfigError, match="lower train.batch_size"):
        ClassifyFeed(corpus, batch_size=8, seed=0)


def test_pad_and_reverse():
    inputs, lengths = pad_texts([np.array([1, 2, 3]), np.array([4])])
    assert inputs.T.tolist() == [[1, 2, 3], [4, -1, -1]] and lengths.tolist() == [3, 1]
    assert reverse_padded(inputs, lengths).T.tolist() == [[3, 2, 1], [4, -1, -1]]
    dense = np.arange(12.0).reshape(3, 2, 2)
    rev = reverse_padded(dense, np.array([3, 2]))
    assert rev[:, 0].tolist() == dense[::-1, 0].tolist()
    assert rev[:, 1].tolist() == [dense[1, 1].tolist(), dense[0, 1].tolist(), dense[2, 1].tolist()]


def series(n=40, val_fraction=0.25):
    t = np.arange(n, dtype=np.float64)
    return series_corpus("s", np.column_stack([np.sin(t / 3) * 10 + 50, t]), columns=["a", "b"],
                         val_fraction=val_fraction)


def test_forecast_windows_align_and_use_train_statistics():
    corpus = series()
    feed = ForecastFeed(corpus, window=5, horizon=3, batch_size=4, seed=1)
    assert feed.n_windows == 30 - 3 - 5 + 1 and feed.steps_per_epoch == 6
    scaled = (corpus.values - corpus.values[:30].mean(0)) / corpus.values[:30].std(0)
    batch = feed.batch(2)
    assert batch.inputs.shape == (5, 4, 2) and batch.targets.shape == (4, 3, 2)
    for b, s in enumerate(batch.starts):
        assert np.allclose(batch.inputs[:, b], scaled[s - 5 : s])  # the window before s
        assert np.allclose(batch.targets[b], scaled[s : s + 3])  # the next 3 values
        assert s + 3 <= corpus.n_train and batch.mask[b].all()  # training targets only
    starts = np.concatenate([feed.starts(k) for k in range(6)])
    assert sorted(starts.tolist()) == list(range(5, 28))


def test_forecast_val_windows_have_true_history():
    corpus = series()
    feed = ForecastFeed(corpus, window=5, horizon=2, batch_size=4, seed=1)
    val = list(feed.val_batches())
    starts = np.concatenate([v.starts for v in val])
    assert starts.tolist() == list(range(30, 40))  # every val value is one first target
    first = val[0]
    assert np.allclose(corpus.unscale(first.inputs[:, 0]), corpus.values[25:30])  # train history
    assert np.allclose(corpus.unscale(first.targets[:, 0]), corpus.values[30:34])
    last = val[-1]
    assert last.mask[-1].tolist() == [True, False] and (last.targets[-1, 1] == 0).all()
    assert np.allclose(corpus.unscale(feed.history()), corpus.values[25:30])


def test_forecast_feed_is_a_pure_function_of_the_step():
    corpus = series()
    a = ForecastFeed(corpus, window=4, batch_size=5, seed=3, dtype="float32")
    b = ForecastFeed(corpus, window=4, batch_size=5, seed=3, dtype="float32")
    x = [a.batch(k) for k in (9, 1, 4)]
    y = [b.batch(k) for k in (4, 1, 9)][::-1]
    for p, q in zip(x, y, strict=True):
        assert np.array_equal(p.inputs, q.inputs) and np.array_equal(p.targets, q.targets)
        assert p.inputs.dtype == np.float32
    with pytest.raises(ConfigError, match="lower task.window"):
        ForecastFeed(corpus, window=30, batch_size=1, seed=0)
    with pytest.raises(ConfigError, match="task.horizon must be a positive integer"):
        ForecastFeed(corpus, window=3, horizon=0, batch_size=1, seed=0)


def test_recursive_forecast_feeds_predictions_back():
    history = np.array([[1.0], [2.0], [3.0]])
    out = recursive_forecast(lambda h: h[-1] + (h[-1] - h[-2]), history, 4)
    assert out[:, 0].tolist() == [4.0, 5.0, 6.0, 7.0]
    chunked = recursive_forecast(lambda h: np.array([[h[-1, 0] + 1], [h[-1, 0] + 2]]), history, 3)
    assert chunked[:, 0].tolist() == [4.0, 5.0, 6.0]
