"""Helpers shared by the tests: a movable clock, CSRF extraction, sign-in through the forms."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

PASSWORD = "correct horse battery"
#: Argon2 parameters cheap enough for hundreds of sign-ins per test run.
FAST_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 8, "ARGON2_PARALLELISM": 1}
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class FakeClock:
    """Seconds since the epoch that only move when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token a page gives this client (its meta tag)."""
    match = CSRF_META.search(client.get(path).get_data(as_text=True))
    assert match, f"no csrf meta tag on {path}"
    return match.group(1)


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


class AuthActions:
    """Sign in and out through the real forms, CSRF token included."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(
        self,
        username: str = "alice",
        password: str = PASSWORD,
        remember: bool = False,
        next: str | None = None,
    ):  # type: ignore[no-untyped-def]
        data = {"username": username, "password": password, "csrf_token": csrf_token(self.client)}
        if remember:
            data["remember"] = "y"
        if next is not None:
            data["next"] = next
        return self.client.post("/login", data=data)

    def logout(self):  # type: ignore[no-untyped-def]
        token = csrf_token(self.client, "/")
        return self.client.post("/logout", data={"csrf_token": token})


def store_files(app: Flask) -> dict[str, Any]:
    """Every stored session entry with what shows a write: for files their bytes and mtime
    (ns); for Redis the value and how many times the app wrote the key (counted by
    `count_store_writes`), since a rewrite with the same value leaves no trace in Redis."""
    interface: Any = app.session_interface
    if app.config["SESSION_BACKEND"] == "redis":
        writes = app.extensions.setdefault("test.store_writes", {})
        return {
            key.decode(): (interface.client.dump(key), writes.get(key.decode(), 0))
            for key in interface.client.scan_iter("session:*")
        }
    folder = Path(app.instance_path) / "sessions"
    return {
        path.name: (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def count_store_writes(app: Flask) -> None:
    """Count the app's writes per store key (see store_files)."""
    interface: Any = app.session_interface
    writes = app.extensions.setdefault("test.store_writes", {})
    upsert = interface._upsert_session

    def counted(lifetime: Any, session: Any, store_id: str) -> None:
        writes[store_id] = writes.get(store_id, 0) + 1
        upsert(lifetime, session, store_id)

    interface._upsert_session = counted


def clear_store(app: Flask) -> None:
    """Lose every stored session (as a crash or an expiry the app never saw would)."""
    interface: Any = app.session_interface
    if app.config["SESSION_BACKEND"] == "redis":
        interface.client.flushdb()
        return
    for path in (Path(app.instance_path) / "sessions").iterdir():
        path.unlink()


def wait_until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `condition` until it holds (background work: the mail sender, a server)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
