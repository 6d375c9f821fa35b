"""The team set-up: ``mlflow server`` on a real PostgreSQL, a small parallel sweep against it.

PostgreSQL is Debian's (``apt-get install postgresql``; .ci/slow-deps installs it), started with
initdb + pg_ctl in a temporary directory on 127.0.0.1 and a free port. PostgreSQL refuses to run
as root, so as root the server runs as the ``postgres`` user (or ``nobody``) via runuser.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tracking.test_server import check_sweep_runs, free_port, mlflow_server, run_sweep


def pg_bin(name: str) -> str | None:
    """Debian keeps the server binaries in /usr/lib/postgresql/<version>/bin, not on PATH."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    return candidates[-1] if candidates else None


def _as_user() -> tuple[list[str], str | None]:
    """Command prefix to drop root, and the user name (None when not root)."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"], user
    pytest.fail("running as root and neither a 'postgres' nor a 'nobody' user exists")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster; yields a SQLAlchemy URI of a fresh 'mlflow' database."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                    "run .ci/slow-deps (apt-get install postgresql)")
    import psycopg2  # in the `test` and `postgres` extras: missing it is a set-up error

    prefix, user = _as_user()
    # Not under pytest's tmp dir: that one is private to root and the postgres user must own
    # (and reach) its data directory.
    root = Path(tempfile.mkdtemp(prefix="rnnlab-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, log = root / "data", root / "postgres.log"
    port = free_port()
    env = {**os.environ, "LC_ALL": "C"}
    started = False
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, env=env,
                       timeout=120)
        # Listen on 127.0.0.1 only; the unix socket goes into our own directory.
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w",
                        "-t", "60", "start"], check=True, capture_output=True, env=env,
                       timeout=90)
        started = True
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    except subprocess.CalledProcessError as exc:
        text = log.read_text()[-2000:] if log.is_file() else ""
        pytest.fail(f"PostgreSQL failed: {exc.cmd[len(prefix)]} -> {exc.returncode}\n"
                    f"{exc.stderr.decode(errors='replace')[-2000:]}\n{text}")
    finally:
        if started:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30",
                            "stop"], capture_output=True, env=env, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_sweep_against_mlflow_server_on_postgres(tmp_path):
    t0 = time.monotonic()
    with postgres_server() as db_uri, mlflow_server(tmp_path, db_uri) as url:
        jobs = tmp_path / "jobs"
        jobs.mkdir()
        run_sweep(jobs, url, "team", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                      "cell=rnn,gru"])
        client, parent, children = check_sweep_runs(url, "team", ["rnn", "gru"])
        # The runs really are in PostgreSQL.
        import psycopg2

        port = int(db_uri.rsplit(":", 1)[1].split("/")[0])
        with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=port, user="postgres",
                                                 dbname="mlflow")) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT run_uuid, status FROM runs")
                rows = dict(cur.fetchall())
        assert rows[parent.info.run_id] == "FINISHED"
        assert all(rows[c.info.run_id] == "FINISHED" for c in children)
    assert time.monotonic() - t0 < 600
