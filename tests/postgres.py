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
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def url_for(port: int, database: str = DATABASE) -> str:
    return f"postgresql+psycopg://{ROLE}@127.0.0.1:{port}/{database}"


def _libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy URL (psycopg connects with it)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def postgres_server(start_attempts: int = 3) -> Iterator[str]:
    """Start a cluster, yield the SQLAlchemy URL of its database `webapp`, then remove it all."""
    binaries = server_binaries()
    folder = Path(tempfile.mkdtemp(prefix="webapp-postgres-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    folder.chmod(0o700)
    data = folder / "data"

    def run(*command: str) -> None:
        done = subprocess.run(
            [*run_as, *command], cwd=folder, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            log = folder / "server.log"
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                + (log.read_text() if log.exists() else "")
            )

    started = False
    try:
        run(
            str(binaries / "initdb"),
            "--pgdata",
            str(data),
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        for attempt in range(start_attempts):
            port = free_port()  # another process may take it before the server does: retry
            options = " ".join(
                f"-c {name}={value}"
                for name, value in {
                    **SERVER_SETTINGS,
                    "port": port,
                    "unix_socket_directories": folder,
                }.items()
            )
            try:
                run(
                    str(binaries / "pg_ctl"),
                    "--pgdata",
                    str(data),
                    "--log",
                    str(folder / "server.log"),
                    "--options",
                    options,
                    "--wait",
                    "--timeout=60",
                    "start",
                )
            except RuntimeError:
                if attempt == start_attempts - 1:
                    raise
                continue
            started = True
            break
        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            role, database = sql.Identifier(ROLE), sql.Identifier(DATABASE)
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(role))
            connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
        yield url_for(port)
    finally:
        if started:
            run(str(binaries / "pg_ctl"), "--pgdata", str(data), "--mode=immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def create_database(url: str, name: str | None = None) -> str:
    """A new empty database on the server of `url` (owned by its role); returns its URL."""
    name = name or f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.rsplit("/", 1)[0] + "/" + name
