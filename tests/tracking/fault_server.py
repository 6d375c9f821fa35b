"""Test helpers: an MLflow tracking server in a thread, and a proxy in front of it that faults.

The proxy answers each request as its ``mode`` says: ``ok`` forwards to the real server,
``garbage`` waits ``delay`` seconds and answers 200 with an HTML page, ``redirect`` answers 302 to
the same URL (a loop), ``silent`` accepts the connection and never answers, ``trickle`` sends the
headers and then one byte every 0.2 s for ever, ``refuse`` closes the listening socket (the next
connect is refused). ``switch_after(path_part, mode)`` changes the mode right after the first
request whose path holds ``path_part`` was answered, so a fault starts at a stage of the run
(after the run was created, at the end), not at a time.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

MODES = ("ok", "garbage", "redirect", "silent", "trickle", "refuse")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server_thread(root: Path) -> Iterator[str]:
    """MLflow's tracking app (sqlite store, proxied artifacts) served from a thread; its URL.

    MLflow's server caches its store per process: one per test module."""
    from mlflow.server import constants

    env = {constants.BACKEND_STORE_URI_ENV_VAR: f"sqlite:///{root / 'server.db'}",
           constants.ARTIFACT_ROOT_ENV_VAR: "mlflow-artifacts:/",
           constants.ARTIFACTS_DESTINATION_ENV_VAR: str(root / "artifacts"),
           constants.SERVE_ARTIFACTS_ENV_VAR: "true"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from mlflow.server import app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", _free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class FaultProxy:
    """A proxy to ``upstream`` that faults as its ``mode`` says (see the module docstring)."""

    def __init__(self, upstream: str, mode: str = "ok", delay: float = 0.0) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.mode, self.delay = mode, delay
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []  # "METHOD path" of every request received
        self._switch: tuple[str, str] | None = None
        self._server: http.server.ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self.serve()

    def switch_after(self, path_part: str, mode: str) -> None:
        """Change to ``mode`` once a request whose path holds ``path_part`` was answered."""
        self._switch = (path_part, mode)

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode
        if mode == "refuse":
            self.close()
        elif self._server is None:
            self.serve()

    def serve(self) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                if mode == "ok":
                    self._forward(body)
                    if proxy._switch and proxy._switch[0] in self.path:
                        _, then = proxy._switch
                        proxy._switch = None
                        proxy.mode = then
                        if then == "refuse":
                            threading.Thread(target=proxy.close).start()
                elif mode == "garbage":
                    time.sleep(proxy.delay)
                    self._answer(200, b"<html><body>upstream proxy says hello</body></html>",
                                 "text/html")
                elif mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif mode == "refuse":  # closing down: drop the connection unanswered
                    self.close_connection = True
                elif mode == "silent":
                    proxy._stop.wait(120)
                elif mode == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    while not proxy._stop.wait(0.2):
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return

            def _answer(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def stop(self) -> None:
        self._stop.set()
        self.close()
