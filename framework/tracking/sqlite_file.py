"""Whether a sqlite store's path can hold its database, checked before MLflow opens it.

MLflow retries a database it cannot open for about 90 s (printing SQLAlchemy's warnings) before
it gives up; a path that is a folder, a pipe, a device, lies under a file, or that the system
refuses (a name too long, a symlink loop) can never become a store, so it is one line at once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from framework.errors import TrackingError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def check_store_file(db: Path) -> None:
    """Raise a one-line TrackingError when ``db`` (a sqlite store's file) cannot be one."""
    fix = "fix mlflow.tracking_uri (e.g. sqlite:///mlflow.db)"
    try:
        info = os.stat(db)
    except (FileNotFoundError, NotADirectoryError):
        _check_folder(db.parent, db, fix)
        return
    except OSError as exc:
        raise TrackingError(f"the MLflow store {db} cannot be used ({exc.strerror or exc}); "
                            f"{fix}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        raise TrackingError(f"the MLflow store {db} is {kind}, not a database file; {fix}")


def _check_folder(folder: Path, db: Path, fix: str) -> None:
    """The nearest existing folder above a store that does not exist yet must be a folder
    (MLflow creates the ones missing below it)."""
    for parent in (folder, *folder.parents):
        try:
            info = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise TrackingError(f"the MLflow store {db} cannot be created "
                                f"({exc.strerror or exc}); {fix}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise TrackingError(f"the MLflow store {db} cannot be created: {parent} is a file, "
                                f"not a folder; {fix}")
        return


__all__ = ["check_store_file"]
