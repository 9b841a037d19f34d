"""Fixtures of the studies' tests: a toy study set, and databases on SQLite and on a real PostgreSQL server.

The PostgreSQL server is Debian's (``apt-get install postgresql``; ``.ci/run`` installs it
as root when missing): a throw-away cluster in a temporary directory on a free port,
started once per test session and stopped at its end; every test gets a new database
in it. PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user and its commands run through ``runuser``. Without the binaries the
PostgreSQL variants skip and say why.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from debuggable.studies import StudySet
from debuggable.studies.db import StudyDatabase

from tests.studies.toy import make_toy_studies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[3]) if Path(p).parts[3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


class _PostgresCluster:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="debuggable-pg-"))
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                raise RuntimeError("running as root and there is no 'postgres' user to own the cluster") from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = self.root / "data"
        self.port = _free_port()
        self.names = itertools.count()

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip() or out.stdout.strip()}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_database(self) -> str:
        import psycopg

        name = f"studies_{next(self.names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres_cluster():
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                    "(Debian package 'postgresql'; .ci/run installs it when run as root)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'debuggable[postgres]')")
    cluster = _PostgresCluster(bindir)
    try:
        cluster.start()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(cluster.root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, then a database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return request.getfixturevalue("postgres_cluster").new_database()


@pytest.fixture(scope="session")
def _toy_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "studies"
    study_set = make_toy_studies(root)
    # The default SQLite database, migrated and holding the studies: copying it is much
    # quicker than migrating anew in every test.
    db = StudyDatabase(study_set.database_url)
    db.migrate()
    db.import_studies(study_set)
    db.close()
    return root


@pytest.fixture
def study_set(tmp_path, _toy_template):
    """The toy studies (``toy`` and ``toy2``, 4 annotators each) in ``tmp_path/studies`` (a fresh copy),
    with their default SQLite database migrated and imported, without answers."""
    shutil.copytree(_toy_template, tmp_path / "studies")
    return StudySet(tmp_path / "studies")
