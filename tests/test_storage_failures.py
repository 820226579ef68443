"""Storage failing under the app: the session folder full or read-only, the database locked
by another writer or full. Each answers a clear 503 (never a 500, never a phantom sign-in),
loses nothing that was answered as done, and recovers as soon as the storage does.

The failures are injected where the kernel would report them, so the tests run anywhere
(mounting a tiny tmpfs needs CAP_SYS_ADMIN, which a CI container may lack): a full disk lets
a file be created and fails its writes with ENOSPC (the created file is left empty, as on a
real full tmpfs, which this was checked against); a read-only mount fails every create,
rename, chmod and delete with EROFS. SQLite is locked by a real second connection, and made
full with its own page limit.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD, csrf_token, session_cookie
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

import webapp.db
import webapp.sessions.policy
from webapp import create_app
from webapp.db import get_db
from webapp.errors import SAVE_FAILED_MESSAGE
from webapp.models import User, UserSession
from webapp.sessions import pruning

pytestmark = pytest.mark.filesystem_only

DEV_FULL = "/dev/full"
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def sessions_folder(app: Flask) -> Path:
    return Path(app.instance_path) / "sessions"


def temporary_files(app: Flask) -> list[Path]:
    return [p for p in sessions_folder(app).iterdir() if p.name.endswith(pruning.TEMPORARY_SUFFIX)]


def entries(app: Flask) -> dict[str, bytes]:
    """The session files proper (not temporary ones), by name, with their bytes."""
    return {
        p.name: p.read_bytes()
        for p in sessions_folder(app).iterdir()
        if not p.name.endswith(pruning.TEMPORARY_SUFFIX)
    }


class FailingFolder:
    """Makes the kernel calls on files inside `folder` fail as a full or read-only disk does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
        self.monkeypatch = monkeypatch
        self.folder = str(folder) + os.sep
        self.failures = 0

    def inside(self, *paths: Any) -> bool:
        return any(
            isinstance(p, str | os.PathLike) and os.fspath(p).startswith(self.folder) for p in paths
        )

    def fail(self, code: int, path: Any) -> OSError:
        self.failures += 1
        return OSError(code, os.strerror(code), os.fspath(path))

    @contextmanager
    def full(self) -> Iterator[FailingFolder]:
        """ENOSPC: files can still be created (and are left empty), every write fails."""
        assert os.path.exists(DEV_FULL), "this test needs /dev/full to inject ENOSPC"
        real_open = os.open

        def open_full(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            fd = real_open(path, flags, *args, **kwargs)
            if self.inside(path) and flags & WRITE_FLAGS:
                self.failures += 1
                full = real_open(DEV_FULL, os.O_WRONLY)
                os.dup2(full, fd)  # the file exists; what is written to fd goes to /dev/full
                os.close(full)
            return fd

        with self.monkeypatch.context() as patch:
            patch.setattr(os, "open", open_full)
            yield self

    @contextmanager
    def read_only(self) -> Iterator[FailingFolder]:
        """EROFS: reads work; creating, writing, renaming, chmod and deleting fail."""
        real_open = os.open

        def open_ro(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if self.inside(path) and flags & WRITE_FLAGS:
                raise self.fail(errno.EROFS, path)
            return real_open(path, flags, *args, **kwargs)

        def refuse(real: Any) -> Any:
            def refused(*paths: Any, **kwargs: Any) -> Any:
                if self.inside(*paths):
                    raise self.fail(errno.EROFS, paths[0])
                return real(*paths, **kwargs)

            return refused

        with self.monkeypatch.context() as patch:
            patch.setattr(os, "open", open_ro)
            for name in ("remove", "unlink", "replace", "rename", "chmod"):
                patch.setattr(os, name, refuse(getattr(os, name)))
            yield self


@pytest.fixture
def disk(app: Flask, monkeypatch: pytest.MonkeyPatch) -> FailingFolder:
    return FailingFolder(monkeypatch, sessions_folder(app))


def sign_in(client: FlaskClient, token: str | None = None) -> Any:
    data = {"username": "alice", "password": PASSWORD}
    return client.post("/login", data={**data, "csrf_token": token or csrf_token(client, "/login")})


def assert_signed_out(client: FlaskClient) -> None:
    assert client.get("/session").json == {}
    assert client.get("/api/hello").status_code == 401


def assert_503(response: Any) -> None:
    """The same 503 page as any outage (JSON for scripts), saying what went wrong."""
    assert response.status_code == 503, response.get_data(as_text=True)
    assert "Location" not in response.headers
    assert response.headers["Retry-After"]
    if response.mimetype == "application/json":
        assert response.json["error"]
    else:
        assert response.mimetype == "text/html"
        assert "error-message" in response.get_data(as_text=True)


FAILURES = ("full", "read_only")


@pytest.mark.parametrize("failure", FAILURES)
def test_sign_in_on_a_failing_store_is_a_503_then_signs_in_when_it_recovers(
    app, client, user, disk, failure
):
    token = csrf_token(client, "/login")
    with getattr(disk, failure)():
        response = sign_in(client, token)
    assert disk.failures, "the failure was not reached"
    assert_503(response)
    assert SAVE_FAILED_MESSAGE in response.get_data(as_text=True)
    assert session_cookie(client) is None  # never a phantom sign-in
    assert entries(app) == {}
    assert_signed_out(client)
    response = sign_in(client)  # the same browser, once the disk is back
    assert response.status_code == 303
    assert client.get("/session").json["user"]["username"] == "alice"


@pytest.mark.parametrize("failure", FAILURES)
def test_keepalive_on_a_failing_store_is_a_503_and_the_session_is_intact(
    app, client, auth, user, disk, failure
):
    assert auth.login().status_code == 303
    before = entries(app)
    token = csrf_token(client, "/profile")
    with getattr(disk, failure)():
        response = client.post("/session/keepalive", data={"csrf_token": token})
    assert disk.failures
    assert_503(response)
    assert entries(app) == before  # the old file is whole: cachelib writes aside, then renames
    assert client.get("/session").json["user"]["username"] == "alice"
    assert client.post("/session/keepalive", data={"csrf_token": token}).status_code == 303


@pytest.mark.parametrize("failure", FAILURES)
def test_profile_change_on_a_failing_store_is_a_503_and_the_session_is_intact(
    app, client, auth, user, disk, failure
):
    assert auth.login().status_code == 303
    before = entries(app)
    data = {"name": "Alice Renamed", "email": "alice@example.com"}
    token = csrf_token(client, "/account/profile")
    with getattr(disk, failure)():
        response = client.post("/account/profile", data={**data, "csrf_token": token})
    assert disk.failures
    assert_503(response)
    assert entries(app) == before
    assert client.get("/session").json["user"]["username"] == "alice"
    data["name"] = "Alice Again"
    response = client.post("/account/profile", data={**data, "csrf_token": token})
    assert response.status_code == 303
    assert client.get("/session").json["user"]["name"] == "Alice Again"


def test_a_sign_in_answered_503_sets_no_remember_cookie(app, client, user, disk):
    """Else the browser is signed in by it once the disk is back: a sign-in it was told failed."""
    data = {"username": "alice", "password": PASSWORD, "remember": "y"}
    token = csrf_token(client, "/login")
    with disk.full():
        response = client.post("/login", data={**data, "csrf_token": token})
    assert_503(response)
    assert "Set-Cookie" not in response.headers
    assert client.get_cookie("remember") is None
    assert client.get("/profile").status_code == 302
    assert_signed_out(client)


def test_a_sign_in_answered_503_keeps_the_form_token_so_that_a_retry_works(app, client, user, disk):
    token = csrf_token(client, "/login")
    with disk.full():
        assert_503(sign_in(client, token))
    assert sign_in(client, token).status_code == 303


def test_sign_out_on_a_read_only_store_is_a_503_not_a_session_left_alive(
    app, client, auth, user, disk
):
    """cachelib only logs a failed delete: the answer "signed out" would leave the session
    usable by any copy of its cookie."""
    assert auth.login().status_code == 303
    copy = app.test_client()
    copy.set_cookie("session", session_cookie(client) or "")
    token = csrf_token(client, "/")
    with disk.read_only():
        response = client.post("/logout", data={"csrf_token": token})
    assert disk.failures
    assert_503(response)
    assert client.get("/session").json["user"]["username"] == "alice"  # as the 503 says
    # ...and still listed, so it can still be ended from /account/sessions: the store entry
    # goes before its index row, whatever stops a sign-out half-way (a kill -9 too).
    assert count(app, select(func.count()).select_from(UserSession)) == 1
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert_signed_out(copy)


def test_revoking_on_a_read_only_store_is_a_503_and_nothing_half_done(
    app, client, auth, user, disk
):
    other = app.test_client()
    assert sign_in(other).status_code == 303
    assert auth.login().status_code == 303
    data = {"password": PASSWORD, "csrf_token": csrf_token(client, "/account/sessions")}
    with disk.read_only():
        response = client.post("/account/sessions/revoke-others", data=data)
    assert disk.failures
    assert_503(response)
    assert other.get("/session").json["user"]["username"] == "alice"
    assert client.post("/account/sessions/revoke-others", data=data).status_code == 303
    assert_signed_out(other)


def test_a_full_disk_leaves_no_temporary_file(app, client, user, disk):
    """cachelib's own write would leave its (empty) temporary file behind on ENOSPC."""
    token = csrf_token(client, "/login")
    with disk.full():
        assert sign_in(client, token).status_code == 503
    assert disk.failures
    assert list(sessions_folder(app).iterdir()) == []


def test_the_sweep_removes_what_a_crash_left_mid_write(app):
    """kill -9 between creating the temporary file and renaming it leaves the file behind."""
    left = sessions_folder(app) / ("tmpcrashed" + pruning.TEMPORARY_SUFFIX)
    left.write_bytes(b"\0\0\0\0partial")
    assert pruning.sweep_store(app) == 0  # a young one may be a write in progress: kept
    old = time.time() - pruning.TEMPORARY_GRACE - 1
    os.utime(left, (old, old))
    assert pruning.sweep_store(app) == 1
    assert temporary_files(app) == []


def test_the_sweep_keeps_live_sessions_and_a_write_in_progress(app, client, auth, user):
    assert auth.login().status_code == 303
    live = entries(app)
    in_progress = sessions_folder(app) / ("tmpwriting" + pruning.TEMPORARY_SUFFIX)
    in_progress.write_bytes(b"")  # just created by mkstemp: nothing written yet
    assert pruning.sweep_store(app) == 0
    assert in_progress.exists()
    assert entries(app) == live


# --- the database -------------------------------------------------------------------------

#: The busy timeout for these tests: how long a request waits for another writer's lock.
BUSY_TIMEOUT_MS = 300


@pytest.fixture
def sqlite_app(app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The embedded app with a short SQLite busy timeout, so that a held lock fails fast."""
    monkeypatch.setattr(webapp.db, "SQLITE_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS)
    # A few hundred sign-ups from one address: past the default sign-up limit.
    app = create_app({**app_config, "SIGNUP_LIMIT": 1000})
    with app.app_context():
        from webapp.users import create_user

        create_user(get_db(), "alice", PASSWORD, "Alice Example", "alice@example.com")
    return app


@contextmanager
def write_lock(app: Flask) -> Iterator[None]:
    """Another connection holds SQLite's write lock (BEGIN IMMEDIATE) for the duration."""
    holder = sqlite3.connect(Path(app.instance_path) / "webapp.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def sign_up(client: FlaskClient, username: str, token: str | None = None) -> Any:
    data = {
        "username": username,
        "name": username.title(),
        "email": f"{username}@example.com",
        "password": PASSWORD,
        "confirm": PASSWORD,
        "csrf_token": token or csrf_token(client, "/signup"),
    }
    return client.post("/signup", data=data)


def count(app: Flask, query: Any) -> int:
    with app.app_context():
        return int(get_db().scalar(query) or 0)


def users_named(app: Flask, username: str) -> int:
    return count(app, select(func.count()).select_from(User).where(User.username == username))


def test_sign_up_while_the_database_is_locked_is_a_503_and_creates_nothing(sqlite_app):
    client = sqlite_app.test_client()
    token = csrf_token(client, "/signup")
    with write_lock(sqlite_app):
        response = sign_up(client, "bob", token)
    assert_503(response)
    assert "database" in response.get_data(as_text=True)
    assert users_named(sqlite_app, "bob") == 0
    assert session_cookie(client) is None
    assert_signed_out(client)
    assert sign_up(client, "bob").status_code == 303  # the lock is gone: it works at once
    assert users_named(sqlite_app, "bob") == 1
    assert client.get("/session").json["user"]["username"] == "bob"


def test_sign_in_while_the_database_is_locked_is_a_503_not_a_500_nor_a_sign_in(sqlite_app):
    """The index row cannot be written; the answer then still reads the database (the
    store's write guard), which a session left in its failed flush would turn into a 500."""
    client = sqlite_app.test_client()
    token = csrf_token(client, "/login")
    with write_lock(sqlite_app):
        response = sign_in(client, token)
        assert client.get("/session").json == {}  # reads go on while another writes (WAL)
    assert_503(response)
    assert "database" in response.get_data(as_text=True)
    assert session_cookie(client) is None
    assert entries(sqlite_app) == {}
    assert count(sqlite_app, select(func.count()).select_from(UserSession)) == 0
    assert sign_in(client).status_code == 303
    assert client.get("/session").json["user"]["username"] == "alice"


def test_a_503_after_the_session_was_indexed_signs_nobody_in(sqlite_app, monkeypatch):
    """The session's index row is written, then a later write of the sign-in fails (another
    writer took the lock in between): the 503 must not carry the session cookie."""

    def locked(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

    client = sqlite_app.test_client()
    token = csrf_token(client, "/login")
    with monkeypatch.context() as patch:
        patch.setattr(webapp.sessions.policy.throttle, "record", locked)
        response = sign_in(client, token)
    assert_503(response)
    assert "Set-Cookie" not in response.headers
    assert entries(sqlite_app) == {}
    assert_signed_out(client)


def test_a_full_database_is_a_503_and_recovers(sqlite_app):
    """SQLite's page limit makes it report SQLITE_FULL, as a full disk would: sign-ups go on
    until one needs a new page; that one is a 503 and leaves no user behind."""
    engine = webapp.db.engine_of(sqlite_app)
    limit: dict[str, int] = {}

    @event.listens_for(engine, "connect")
    def cap(dbapi_connection: Any, _record: Any) -> None:
        if limit:
            dbapi_connection.execute(f"PRAGMA max_page_count={limit['pages']}")

    with sqlite_app.app_context():
        pages = get_db().connection().exec_driver_sql("PRAGMA page_count").scalar()
    limit["pages"] = int(pages)
    engine.dispose()  # the pooled connections reconnect with the cap
    answered: dict[str, int] = {}
    for n in range(200):
        username = f"user{n:03d}"
        answered[username] = sign_up(sqlite_app.test_client(), username).status_code
        if answered[username] != 303:
            break
    assert set(answered.values()) == {303, 503}, answered
    for username, status in answered.items():
        assert users_named(sqlite_app, username) == (1 if status == 303 else 0), username
    limit.clear()
    engine.dispose()
    client = sqlite_app.test_client()
    assert sign_up(client, "carol").status_code == 303
    assert client.get("/session").json["user"]["username"] == "carol"
