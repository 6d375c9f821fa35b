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
