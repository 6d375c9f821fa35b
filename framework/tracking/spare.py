"""A spare MLflow helper: one that has imported MLflow already and waits for the next tracked job.

Importing MLflow and its SQLAlchemy store takes about 1.8 s of CPU, more than a short job's whole
run, and no ordering of a fresh helper hides it: the job ends first and waits. So a tracked job
starts one spare helper for the next (the same program as
:mod:`~framework.tracking.tracker_process`, started with ``--spare``). The spare imports what
every tracked job needs, under ``SCHED_IDLE`` (only on a core no other process wants, so it slows
neither that job nor the commands after it), then waits on a Unix socket for one job; the next
tracked job started
from the same Python and the same rnnlab checkout connects at once and uses it as its helper
(its working directory, environment, ``sys.path``, umask and stderr are handed over), so
tracking costs that job little. The spare serves exactly one job; that job starts the next one.
Python's ``multiprocessing`` "forkserver" and build servers such as Gradle's daemon keep a warm
process for the same reason.

Safety and lifetime:

* The socket lives in a folder only this user can open (``$TMPDIR/rnnlab-<uid>``, mode 0700,
  refused when owned by someone else or open to others), and each side checks the other's user
  id (``SO_PEERCRED``). Messages are JSON lines; nothing is unpickled.
* A spare serves only jobs whose code it runs: the socket's name holds a digest of the Python,
  the rnnlab source files (names, sizes, modification times), the installed packages' folders,
  ``PYTHONPATH`` and the ``MLFLOW_*`` environment. A job whose digest differs starts a fresh
  helper; the next spare replaces the stale one.
* At most one spare per Python and checkout (a lock file), waiting ``RNNLAB_SPARE_HELPER``
  seconds (600 unless set) and then exiting; ``RNNLAB_SPARE_HELPER=0`` leaves none behind. A
  waiting spare holds no run and no file open but its lock: ending it (``kill``) loses nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import site
import socket
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

IDLE_ENV = "RNNLAB_SPARE_HELPER"
DEFAULT_IDLE = 600.0  # seconds a spare waits for a job
HELLO_TIMEOUT = 5.0  # seconds a spare waits for a connected job's first line
ANSWER_TIMEOUT = 2.0  # seconds a job waits for the spare's "ok" (sent from a thread at once)
MAX_HELLO = 1 << 22  # bytes of a job's first line (its environment): more is refused
ROOT = Path(__file__).resolve().parents[2]
DIGEST = 16  # hex characters of each digest in a socket's name
SOCKET_NAME_LENGTH = 1 + DIGEST + 1 + DIGEST + len(".sock")
MAX_SOCKET_PATH = 107  # bytes a Unix socket's path may hold (108 with its terminating NUL)
SOURCE_DIRS = ("framework", "cells", "datasets")
# Linux: the peer's credentials (SO_PEERCRED), fd passing, /proc for a spare's liveness.
AVAILABLE = (sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED")
             and hasattr(socket, "send_fds"))


def idle_seconds() -> float:
    """How long a spare waits for a job (0: no spare is left behind, or spares are not available
    on this system)."""
    if not AVAILABLE:
        return 0.0
    raw = os.environ.get(IDLE_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_IDLE
    except ValueError:
        return 0.0


def _folder(temp_root: str | os.PathLike[str] | None = None) -> Path | None:
    """The private folder of this user's spares (in ``temp_root``, default the temporary
    folder), made if needed; None when it is not private."""
    path = Path(temp_root or tempfile.gettempdir()) / f"rnnlab-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return None
    private = (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
               and not info.st_mode & 0o077)
    short = len(os.fsencode(path)) + SOCKET_NAME_LENGTH < MAX_SOCKET_PATH
    return path if private and short else None


def _source_stats() -> Iterator[str]:
    for name in SOURCE_DIRS:
        for folder, dirs, files in os.walk(ROOT / name):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for file in sorted(files):
                if file.endswith(".py"):
                    info = os.stat(os.path.join(folder, file))
                    yield f"{folder}/{file}:{info.st_size}:{info.st_mtime_ns}"


def _package_stats() -> Iterator[str]:
    """The folders packages are installed in (a folder's time changes when a package is added
    or removed there), and ``PYTHONPATH``."""
    yield os.environ.get("PYTHONPATH", "")
    for entry in sorted({*site.getsitepackages(), site.getusersitepackages(),
                         *sysconfig.get_paths().values()}):
        try:
            yield f"{entry}:{os.stat(entry).st_mtime_ns}"
        except OSError:
            yield f"{entry}:-"


def names() -> tuple[str, str]:
    """``(slot, code)``: the digest of this Python and checkout (one spare each), and the digest
    of the code a spare for it runs."""
    slot = hashlib.sha256(f"{os.getuid()}\0{sys.executable}\0{ROOT}".encode()).hexdigest()[:DIGEST]
    code = hashlib.sha256()
    for part in (sys.version, *_source_stats(), *_package_stats(),
                 *sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MLFLOW_"))):
        code.update(part.encode() + b"\0")
    return slot, code.hexdigest()[:DIGEST]


def _peer(sock: socket.socket) -> tuple[int, int]:
    """The connected process's (pid, uid)."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                       struct.calcsize("3i")))
    return pid, uid


# ---------------------------------------------------------------------------- the job's side
class SpareProcess:
    """A connected spare, seen by the job as the helper's ``Popen``: ``stdin``/``stdout`` are the
    socket's two directions; the spare is not this process's child, so its exit status is not
    known (``returncode`` stays None)."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self._sock, self.pid, self.returncode = sock, pid, None
        self.stdin, self.stdout = _Sending(sock), sock

    def poll(self) -> int | None:
        return None if _alive(self.pid) else -1

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the spare has closed its end (it exits right after)."""
        try:
            self._sock.settimeout(timeout)
            while self._sock.recv(1 << 16):
                pass
        except OSError:  # closed here already, or the timeout
            pass
        return self.returncode

    def kill(self) -> None:
        """Hang up: a spare that has not started a run exits when its job hangs up."""
        self._sock.close()


class _Sending:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


_started: tuple[str, dict[str, str]] | None = None  # the job's folder and environment at start


def claim() -> SpareProcess | None:
    """The spare waiting for this job, connected and handed this job's context, or None."""
    global _started
    _started = os.getcwd(), dict(os.environ)
    if not idle_seconds():
        return None
    folder = _folder()
    if folder is None:
        return None
    slot, code = names()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)
        sock.connect(str(folder / f"{slot}.{code}.sock"))
        pid, uid = _peer(sock)
        if uid != os.getuid():
            raise OSError("a spare helper of another user")
        umask = os.umask(0o022)
        os.umask(umask)
        hello = {"cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path, "umask": umask}
        socket.send_fds(sock, [json.dumps(hello).encode() + b"\n"], [2])
        sock.settimeout(ANSWER_TIMEOUT)
        if sock.recv(3) != b"ok\n":  # another job took this spare first
            raise OSError("no answer")
        sock.settimeout(None)
    except OSError:
        sock.close()
        return None
    return SpareProcess(sock, pid)


def leave_spare() -> subprocess.Popen | None:
    """Start the next spare (detached, silent) in the folder and environment the job started
    with, unless spares are off or unusable here."""
    if not idle_seconds() or _folder() is None:
        return None
    cwd, env = _started or (os.getcwd(), dict(os.environ))
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "framework.tracking.tracker_process", "--spare"], cwd=cwd,
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    except OSError:
        return None  # a job's outcome never depends on its spare


def stop_spares(temp_root: str | os.PathLike[str] | None = None, settle: float = 0.0) -> int:
    """Ask every spare of this user's (under ``temp_root``, default the temporary folder) to
    exit, waiting ``settle`` seconds first for one a job has just started; how many did. Returns
    once no spare holds its lock (or after 10 s)."""
    folder = _folder(temp_root)
    if folder is None:
        return 0
    time.sleep(settle)
    stopped, deadline = 0, time.monotonic() + 10.0
    while True:
        stopped += _retire(folder, "*")
        if not any(map(_held, folder.glob("*.lock"))) or time.monotonic() > deadline:
            return stopped
        time.sleep(0.05)  # a spare between taking its lock and listening


def _held(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


# ------------------------------------------------------------------------- the spare's side
def _retire(folder: Path, slot: str) -> int:
    """Ask the spares of ``slot`` (a glob pattern) to exit; how many did."""
    stopped = 0
    for path in folder.glob(f"{slot}.*.sock"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.settimeout(HELLO_TIMEOUT)
                sock.connect(str(path))
                sock.sendall(b'{"retire": true}\n')
                sock.recv(1)  # end-of-file once it has gone
                stopped += 1
            except OSError:
                path.unlink(missing_ok=True)  # nobody listens there
    return stopped


def wait_for_job(warm_up: Callable[[], None]) -> tuple[socket.socket, dict[str, Any]] | None:
    """Be the slot's spare: listen, run ``warm_up``, and take one job. Returns the job's
    connection and hello (its context applied: folder, environment, ``sys.path``, stderr), or
    None when no job came (or another spare already serves this code).

    A thread accepts while ``warm_up`` runs and answers the first job at once (``ok``), then
    stops listening: a job that connected as well is told nothing and starts its own helper.
    """
    folder, idle = _folder(), idle_seconds()
    if folder is None or not idle:
        return None
    slot, code = names()
    lock = os.open(folder / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        if (folder / f"{slot}.{code}.sock").exists():
            os.close(lock)
            return None  # a spare for this very code is there
        _retire(folder, slot)
        if not _lock_within(lock, HELLO_TIMEOUT):  # the stale one's exit releases it
            os.close(lock)
            return None
    path = folder / f"{slot}.{code}.sock"
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    taken: list[tuple[socket.socket, dict[str, Any], int]] = []
    released: list[bool] = []

    def release() -> None:  # the socket and the lock: the next spare may start
        if not released:
            released.append(True)
            path.unlink(missing_ok=True)
            listener.close()
            os.close(lock)

    def take() -> None:
        try:
            listener.settimeout(idle)
            while not taken:
                try:
                    conn, _ = listener.accept()
                except OSError:  # the idle time is over
                    return
                job = _hello(conn)
                if job is None:
                    conn.close()
                elif job[0].get("retire"):
                    path.unlink(missing_ok=True)
                    os._exit(0)  # asked to make room: a waiting spare holds nothing
                else:
                    taken.append((conn, *job))  # from now on SIGTERM is ignored
                    release()  # before the answer: the job starts the next spare at once
                    _schedule("SCHED_OTHER", threading.main_thread().native_id, 0)
                    try:
                        conn.sendall(b"ok\n")
                    except OSError:  # the job is gone: the loop then reads end-of-file
                        pass
        finally:
            release()

    def ended(signum: int, frame: Any) -> None:  # SIGTERM (pkill): leave no socket file behind
        if not taken:  # a spare that has taken a job ignores it, as the helper it now is does
            path.unlink(missing_ok=True)
            os._exit(0)

    signal.signal(signal.SIGTERM, ended)
    _schedule("SCHED_IDLE", 0)  # imports only on a core nothing else wants (the thread too)
    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    try:
        warm_up()
    except Exception:  # noqa: BLE001
        # What failed is imported again, and reported, when the job's calls need it (as in a
        # fresh helper): a job already taken is never left without its helper.
        pass
    taker.join()
    if not taken:
        return None
    conn, hello, stderr = taken[0]
    conn.settimeout(None)
    os.chdir(hello["cwd"])
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in hello["env"].items()})
    sys.path[:] = [str(entry) for entry in hello["path"]]
    os.umask(hello["umask"] & 0o777)
    os.dup2(stderr, 2)
    os.close(stderr)
    return conn, hello


def _schedule(policy: str, *threads: int) -> None:
    """Put ``threads`` (0: this one) under the scheduling ``policy``, where the system has it.

    A waiting spare imports under ``SCHED_IDLE``: it runs only on a core no other process
    wants, so it slows neither the job that started it nor the commands that follow; once it has
    a job it goes back to ``SCHED_OTHER`` (allowed to an unprivileged process since Linux 2.6.39,
    its nice value unchanged)."""
    number = getattr(os, policy, None)
    if number is None or not hasattr(os, "sched_setscheduler"):
        return
    for thread in threads:
        try:
            os.sched_setscheduler(thread, number, os.sched_param(0))
        except OSError:
            pass


def _lock_within(fd: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def _hello(conn: socket.socket) -> tuple[dict[str, Any], int] | None:
    """A connected process's first line (a retire request, or a job's context with its pid as
    ``owner``) and the stderr it sent; None for anything else, or another user's process."""
    fds: list[int] = []
    try:
        pid, uid = _peer(conn)
        if uid != os.getuid():
            return None
        conn.settimeout(HELLO_TIMEOUT)
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
        while not data.endswith(b"\n") and len(data) < MAX_HELLO:
            more = conn.recv(1 << 20)
            if not more:
                break
            data += more
        hello = json.loads(data)
    except (OSError, ValueError):
        hello = None
    if isinstance(hello, dict) and hello.get("retire"):
        return hello, -1
    usable = (isinstance(hello, dict) and len(fds) == 1 and isinstance(hello.get("env"), dict)
              and isinstance(hello.get("path"), list) and isinstance(hello.get("umask"), int)
              and os.path.isdir(str(hello.get("cwd"))))
    if not usable:
        for fd in fds:
            os.close(fd)
        return None
    hello["owner"] = pid  # the job's pid as the kernel tells it
    return hello, fds[0]


__all__ = ["DEFAULT_IDLE", "IDLE_ENV", "SpareProcess", "claim", "idle_seconds", "leave_spare",
           "names", "stop_spares", "wait_for_job"]
