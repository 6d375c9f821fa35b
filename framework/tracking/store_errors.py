"""What a failed MLflow store call means, in one line: a sqlite file's fault or an http server's.

A sqlite store may be locked, read-only or on a full disk; an http server may redirect in a loop,
answer something other than MLflow's JSON, never answer, or refuse the connection.

MLflow wraps sqlite's own words ("database is locked", "attempt to write a readonly database") in
SQLAlchemy's, whose first line is often "(raised as a result of Query-invoked autoflush; ...)",
and logs each failure with a 60-line traceback before raising.  Here the cause is found anywhere
in the exception chain and said with the store's path and a fix; the traceback log is dropped
because the caller reports the failure itself.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

# sqlite's messages (lower case) -> what they mean for the user, and the fix.
_SQLITE_FAULTS = (
    ("database is locked", "is locked by another process",
     "wait for that process to finish, or use another mlflow.tracking_uri"),
    ("readonly database", "is read-only",
     "make the file and its folder writable, or use another mlflow.tracking_uri"),
    ("database or disk is full", "is on a full disk",
     "free some space, or use another mlflow.tracking_uri"),
    ("unable to open database file", "cannot be opened (its folder is missing or not writable)",
     "create the folder or make it writable, or use another mlflow.tracking_uri"),
    ("disk i/o error", "cannot be read or written (disk I/O error)",
     "check the disk, or use another mlflow.tracking_uri"),
)
SQLITE_BUSY_SECONDS = 20  # MLflow's sqlite busy_timeout: how long each call waits for a lock
LOCK_PROBE_SECONDS = 0.5  # a write lock held longer than this is another process's, not a blip
_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO}
_NOISE = ("(raised as a result of query-invoked autoflush",)
_SQLALCHEMY_TRACEBACK = "SQLAlchemy database error"


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in out):
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def first_line(exc: BaseException) -> str:
    """``Type: first meaningful line`` of ``exc`` (SQLAlchemy's autoflush preamble skipped)."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    lines = [line for line in lines if line and not line.lower().startswith(_NOISE)]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def store_fault(exc: BaseException, where: str | Path) -> str | None:
    """One line for a storage fault behind ``exc`` (``where``: the store), or None."""
    chain = _chain(exc)
    text = "\n".join(str(e) for e in chain).lower()
    for needle, meaning, fix in _SQLITE_FAULTS:
        if needle in text:
            return f"the MLflow store {where} {meaning} (sqlite: {needle}); {fix}"
    for e in chain:
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            code = errno.errorcode.get(e.errno or 0, "")
            return (f"the MLflow store {where} cannot write {e.filename or 'its files'}: "
                    f"{e.strerror} [{code}]; free some space or make it writable, or use "
                    f"another mlflow.tracking_uri")
    return None


def sqlite_read_only(db: Path, where: str | Path) -> str | None:
    """The one line for a sqlite store that cannot be written (a read-only file, folder or
    mount), found without opening it, or None. sqlite writes its journal beside the file, so
    the folder must be writable too."""
    targets = [t for t in (db, db.parent) if t.exists()]
    if targets and not all(os.access(t, os.W_OK) for t in targets):
        return store_fault(OSError("attempt to write a readonly database"), where)
    return None


# What requests/urllib3/MLflow say (lower case) about a server that answers badly -> in words.
_HTTP_FAULTS = (
    ("exceeded 30 redirects", "it redirects in a loop (more than 30 redirects)"),
    ("toomanyredirects", "it redirects in a loop"),
    ("not in a valid json format", "it answered with something other than MLflow's JSON"),
    ("read timed out", "it did not answer within {timeout} s (MLFLOW_HTTP_REQUEST_TIMEOUT)"),
    ("connecttimeout", "it did not accept a connection within {timeout} s "
                       "(MLFLOW_HTTP_REQUEST_TIMEOUT)"),
    ("connection refused", "it refused the connection"),
    ("remotedisconnected", "it closed the connection without answering"),
    ("connection aborted", "it closed the connection without answering"),
    ("connection reset", "it reset the connection"),
)


def warn_if_locked(db: Path) -> bool:
    """One warning line on stderr when the existing sqlite store ``db`` is held locked for
    writing by another process for over :data:`LOCK_PROBE_SECONDS`: MLflow's calls would wait
    up to its busy timeout each, saying nothing. True when it warned. The probe takes sqlite's
    write lock and gives it back at once, writing nothing."""
    import sqlite3
    import sys

    if not Path(db).is_file():
        return False
    try:
        conn = sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=rw", uri=True,
                               timeout=LOCK_PROBE_SECONDS)
    except sqlite3.Error:
        return False  # unreadable: MLflow's own call says why
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return False
    except sqlite3.Error as exc:
        if "locked" not in str(exc).lower():
            return False
        print(f"rnnlab: warning: the MLflow store {db} is locked by another process; waiting "
              f"up to {SQLITE_BUSY_SECONDS} s (MLflow's sqlite busy timeout) for it to finish",
              file=sys.stderr, flush=True)
        return True
    finally:
        conn.close()


def http_fault(exc: BaseException) -> str | None:
    """What a tracking server did wrong, in a few words (a loop of redirects, an answer that is
    not MLflow's, a timeout, a refused connection), or None."""
    text = " ".join(f"{type(e).__name__} {e}" for e in _chain(exc)).lower()
    for needle, meaning in _HTTP_FAULTS:
        if needle in text:
            timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
            return meaning.format(timeout=timeout)
    return None


def describe(exc: BaseException, where: str | Path) -> str:
    """The storage fault behind ``exc`` if there is one, else what an http server did wrong,
    else its first meaningful line (at most 300 characters)."""
    text = store_fault(exc, where) or http_fault(exc) or first_line(exc)
    return text if len(text) <= 300 else text[:297] + "..."


class _DropSqlAlchemyTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_SQLALCHEMY_TRACEBACK)


_FILTER = _DropSqlAlchemyTracebacks()


# Loggers that say at INFO level how a new sqlite store's tables are made ("Creating initial
# MLflow database tables...", alembic's migration steps): not the user's business.
_SETUP_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.db_migrations", "alembic")


def quiet_store_tracebacks() -> None:
    """Drop MLflow's traceback log of a failed sqlite call (the exception still reaches us), and
    its INFO lines about creating or migrating a store's tables."""
    logger = logging.getLogger("mlflow.store.db.utils")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    for name in _SETUP_LOGGERS:
        chatty = logging.getLogger(name)
        if chatty.getEffectiveLevel() < logging.WARNING:
            chatty.setLevel(logging.WARNING)


__all__ = ["LOCK_PROBE_SECONDS", "SQLITE_BUSY_SECONDS", "describe", "first_line", "http_fault",
           "quiet_store_tracebacks", "sqlite_read_only", "store_fault", "warn_if_locked"]
