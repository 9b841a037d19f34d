"""Serving a run's studies: migrate the database, import the studies, run uvicorn.

``python -m debuggable.studies.server RUN/studies --host 127.0.0.1 --port 8000
[--database URL]`` (the CLI's ``debuggable study serve RUN`` calls :func:`serve`).

One process serves every study of the run. SQLite serialises writers, so the server
runs one uvicorn worker (its thread pool handles concurrent requests); for several
servers in front of one database use PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from debuggable.errors import DebuggableError
from debuggable.studies.db import StudyDatabase
from debuggable.studies.files import StudySet

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def prepare(studies_dir: str | os.PathLike, database_url: str | None = None) -> tuple[StudySet, StudyDatabase]:
    """The run's studies and their database, migrated, with every study imported."""
    study_set = StudySet(studies_dir)
    database = StudyDatabase(database_url or study_set.database_url)
    database.migrate()
    database.import_studies(study_set)
    return study_set, database


def _public_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "<this machine's address>"
    return f"[{host}]" if ":" in host else host


def serve(studies_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000, database_url: str | None = None,
          log_level: str = "warning") -> None:
    """Serve the studies in ``studies_dir`` until interrupted.

    Migrates the database, imports the studies (refusing changed studies that already
    have answers), prints the admin URL and the number of annotator links, then runs
    uvicorn in this process.

    Args:
        studies_dir: a run's ``studies/`` directory.
        host, port: where to listen (``0.0.0.0`` for every interface).
        database_url: a SQLAlchemy URL (default: the run's, SQLite in ``studies/``).
        log_level: uvicorn's (``warning`` prints only problems; ``info`` every request).
    """
    import uvicorn

    from debuggable.studies.app import create_app

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise DebuggableError(f"port: expected an integer from 0 to 65535, got {port!r}.")
    if log_level not in LOG_LEVELS:
        raise DebuggableError(f"log_level: expected one of {list(LOG_LEVELS)}, got {log_level!r}.")
    study_set, database = prepare(studies_dir, database_url)
    base = f"http://{_public_host(host)}:{port}"
    links = sum(len(a) for a in study_set.assignments.values())
    print(f"Serving {len(study_set.studies)} studies ({', '.join(study_set.studies)}) from {study_set.root}")
    print(f"Database: {database.engine.url.render_as_string(hide_password=True)}")
    print(f"Admin page (keep it private): {base}/admin/{study_set.signer.admin_token()}")
    print(f"{links} annotator links, each {base}/a/<token>: download them as links.csv from the admin page")
    sys.stdout.flush()
    app = create_app(study_set, database)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1, access_log=log_level in ("info", "debug", "trace"))
    finally:
        database.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """The server in a child process, for tests, benchmarks and demos.

    ``with ServerProcess(studies_dir) as server: httpx.get(server.url + "/healthz")``.
    :meth:`kill` ends it with SIGKILL (no clean shutdown), :meth:`start` starts it
    again on the same port and database.

    Args:
        studies_dir: a run's ``studies/`` directory.
        database_url: as for :func:`serve`.
        port: default: a free one.
        startup_timeout_s: how long :meth:`start` waits for the server to answer.
    """

    def __init__(self, studies_dir: str | os.PathLike, *, database_url: str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", startup_timeout_s: float = 60.0, log_level: str = "warning"):
        self.studies_dir = Path(studies_dir)
        self.database_url = database_url
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self.log_level = log_level
        self.process: subprocess.Popen | None = None
        self.output = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerProcess":
        import httpx

        if self.process is not None and self.process.poll() is None:
            raise DebuggableError("the server is already running; stop or kill it first.")
        cmd = [sys.executable, "-m", "debuggable.studies.server", str(self.studies_dir), "--host", self.host,
               "--port", str(self.port), "--log-level", self.log_level]
        if self.database_url:
            cmd += ["--database", self.database_url]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.output = self.process.stdout.read()
                raise DebuggableError(f"the study server exited with status {self.process.returncode}: {self.output.strip()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise DebuggableError(f"the study server did not answer on {self.url} within {self.startup_timeout_s} s.")

    def _end(self, sig: int, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.output = self.process.stdout.read() if self.process.stdout else ""
        self.process.stdout and self.process.stdout.close()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the server dies at once, mid-request if it was in one."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: uvicorn finishes the requests in flight and exits."""
        self._end(signal.SIGTERM)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m debuggable.studies.server",
                                     description="Serve a run's studies to annotators.")
    parser.add_argument("studies_dir", type=Path, help="the run's studies/ directory")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite in the studies directory)")
    parser.add_argument("--log-level", default="warning", choices=LOG_LEVELS)
    args = parser.parse_args(argv)
    try:
        serve(args.studies_dir, host=args.host, port=args.port, database_url=args.database, log_level=args.log_level)
    except DebuggableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
