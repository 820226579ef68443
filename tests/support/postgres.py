"""A throwaway PostgreSQL server for tests: Debian's server binaries (`apt-get install
postgresql`), a new cluster in a temporary folder, listening only on 127.0.0.1 at a free port,
stopped and removed afterwards.

    with postgres_server() as url:        # postgresql+psycopg://webapp@127.0.0.1:PORT/webapp
        other = create_database(url)      # a fresh empty database on the same server

As root the server runs as the `postgres` user (initdb refuses root), in a `tempfile.mkdtemp()`
folder given to that user (pytest's tmp_path is not reachable by it). Connections from
127.0.0.1 are trusted: the role `webapp` (owner of the database, allowed to create more) needs
no password.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from support.ports import free_port

ROLE = "webapp"
DATABASE = "webapp"
#: A test server: durability off, a small footprint.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "16MB",
}


def server_binaries() -> Path:
    """The newest /usr/lib/postgresql/*/bin that has the server."""
    found = sorted(
        (
            Path(path)
            for path in glob.glob("/usr/lib/postgresql/*/bin")
            if os.path.exists(os.path.join(path, "postgres"))
        ),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql"
        )
    return found[-1]


def url_for(port: int, database: str = DATABASE) -> str:
    return f"postgresql+psycopg://{ROLE}@127.0.0.1:{port}/{database}"


def _libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy URL (psycopg connects with it)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class PostgresServer:
    """One throwaway cluster; stop() and start() again on the same port (outage tests)."""

    def __init__(self) -> None:
        self.binaries = server_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="webapp-postgres-"))
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.folder.chmod(0o700)
        self.data = self.folder / "data"
        self.port = 0
        self.running = False

    @property
    def url(self) -> str:
        return url_for(self.port)

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self.run_as, *command], cwd=self.folder, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            log = self.folder / "server.log"
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                + (log.read_text() if log.exists() else "")
            )

    def _pg_ctl_start(self) -> None:
        options = " ".join(
            f"-c {name}={value}"
            for name, value in {
                **SERVER_SETTINGS,
                "port": self.port,
                "unix_socket_directories": self.folder,
            }.items()
        )
        self._run(
            str(self.binaries / "pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.folder / "server.log"),
            "--options",
            options,
            "--wait",
            "--timeout=60",
            "start",
        )
        self.running = True

    def create(self, start_attempts: int = 3) -> None:
        """initdb, start on a free port, and create the role and database `webapp`."""
        self._run(
            str(self.binaries / "initdb"),
            "--pgdata",
            str(self.data),
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        for attempt in range(start_attempts):
            self.port = free_port()  # another process may take it first: retry
            try:
                self._pg_ctl_start()
                break
            except RuntimeError:
                if attempt == start_attempts - 1:
                    raise
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            role, database = sql.Identifier(ROLE), sql.Identifier(DATABASE)
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(role))
            connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))

    def stop(self) -> None:
        if self.running:
            self._run(
                str(self.binaries / "pg_ctl"), "--pgdata", str(self.data), "--mode=fast", "stop"
            )
            self.running = False

    def start(self) -> None:
        """Start again after stop(), on the same port, with its data."""
        self._pg_ctl_start()

    def remove(self) -> None:
        try:
            if self.running:
                self._run(
                    str(self.binaries / "pg_ctl"),
                    "--pgdata",
                    str(self.data),
                    "--mode=immediate",
                    "stop",
                )
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster, yield the SQLAlchemy URL of its database `webapp`, then remove it all."""
    with running_postgres() as server:
        yield server.url


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.create()
        yield server
    finally:
        server.remove()


def create_database(url: str, name: str | None = None) -> str:
    """A new empty database on the server of `url` (owned by its role); returns its URL."""
    name = name or f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.rsplit("/", 1)[0] + "/" + name
