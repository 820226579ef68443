"""SQLite busy on a real gunicorn (2 workers x 8 threads): many sign-ups and sign-ins at once,
and another process holding the write lock longer than the busy timeout.

Concurrent writers alone must all succeed (each waits its turn); while the lock is held past
the busy timeout, requests that need it get a clear 503, never a 500, never a phantom
sign-in; every sign-up answered as done exists afterwards and every one refused either does
not exist or exists whole (its password signs in); and service recovers the moment the lock
is released.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import _create_user, _environment, gunicorn
from live_client import Client, csrf_tokens

import webapp.db
import webapp.throttle

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import LiveServer

pytestmark = pytest.mark.live

SIGNUPS = 20
#: Sign-ins of one user at once: attempts still being checked count against the username's
#: lock (so that parallel guesses cannot race it), so one more than this would be refused.
SIGN_INS = webapp.throttle.USERNAME_LIMIT
PASSWORD = "busy database passphrase"
#: Longer than twice the busy timeout: the requests that find every worker thread busy (25
#: requests, 16 threads) start after the first ones gave up, and must meet the lock too.
HOLD_SECONDS = 2 * webapp.db.SQLITE_BUSY_TIMEOUT_MS / 1000 + 1
#: Requests queue behind others that wait the whole busy timeout: more than live_client's 10 s.
REQUEST_TIMEOUT = 60


class PatientClient(Client):
    """live_client's browser, waiting longer for an answer."""

    timeout = REQUEST_TIMEOUT


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    folder = tmp_path_factory.mktemp("database-busy")
    env = _environment(folder / "instance", 1)
    _create_user(env)
    with gunicorn(env, folder, 1) as live:
        yield live, folder / "instance" / "webapp.db"


def usernames_in(database: Path) -> set[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return {row[0] for row in connection.execute("SELECT username FROM users")}


def form(live: LiveServer, path: str) -> tuple[PatientClient, str]:
    """A new browser that has loaded the form at `path`, and the form's CSRF token."""
    client = PatientClient(live)
    page = client.request(path)
    assert page.status == 200, page.text
    return client, csrf_tokens(page.text)[1] or ""


def sign_up(client: PatientClient, token: str, username: str) -> tuple[int, PatientClient]:
    data = {
        "username": username,
        "name": username,
        "email": f"{username}@example.com",
        "password": PASSWORD,
        "confirm": PASSWORD,
        "csrf_token": token,
    }
    return client.request("/signup", data=data).status, client


def sign_in(
    client: PatientClient, token: str, username: str, password: str
) -> tuple[int, PatientClient]:
    data = {"username": username, "password": password, "csrf_token": token}
    return client.request("/login", data=data).status, client


def signed_in_as(client: Client) -> str | None:
    return client.state().get("user", {}).get("username")


class Rush:
    """SIGNUPS sign-ups of new users and SIGN_INS sign-ins of alice, their forms loaded first
    so that `go()` sends every POST at once."""

    def __init__(self, live: LiveServer, prefix: str) -> None:
        self.live = live
        self.names = [f"{prefix}-{n}-{uuid.uuid4().hex[:6]}" for n in range(SIGNUPS)]
        self.signup_forms = [form(live, "/signup") for _ in self.names]
        self.login_forms = [form(live, "/login") for _ in range(SIGN_INS)]

    def go(self) -> tuple[dict[str, tuple[int, PatientClient]], list[tuple[int, PatientClient]]]:
        live = self.live
        with ThreadPoolExecutor(SIGNUPS + SIGN_INS) as pool:
            sign_ins = [
                pool.submit(sign_in, client, token, live.username, live.password)
                for client, token in self.login_forms
            ]
            signups = {
                name: pool.submit(sign_up, client, token, name)
                for name, (client, token) in zip(self.names, self.signup_forms, strict=True)
            }
            return {name: f.result() for name, f in signups.items()}, [f.result() for f in sign_ins]


def statuses(
    *answers: dict[str, tuple[int, Client]] | list[tuple[int, Client]],
) -> collections.Counter[int]:
    counts: collections.Counter[int] = collections.Counter()
    for answer in answers:
        values = answer.values() if isinstance(answer, dict) else answer
        counts.update(status for status, _ in values)
    return counts


def test_concurrent_writers_all_succeed(server):
    live, database = server
    signups, sign_ins = Rush(live, "together").go()
    assert statuses(signups, sign_ins) == {303: SIGNUPS + SIGN_INS}
    assert set(signups) <= usernames_in(database)
    for name, (_, client) in signups.items():
        assert signed_in_as(client) == name
    for _, client in sign_ins:
        assert signed_in_as(client) == live.username


def test_a_writer_holding_the_lock_gets_others_a_503_and_nothing_is_lost(server):
    live, database = server
    rush = Rush(live, "locked")
    held = threading.Event()

    def hold() -> None:
        """Another process's long write transaction (here a connection of the test's own)."""
        holder = sqlite3.connect(database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(HOLD_SECONDS)
            holder.execute("ROLLBACK")
        finally:
            holder.close()

    locker = threading.Thread(target=hold)
    locker.start()
    try:
        assert held.wait(30), "could not take the write lock"
        signups, sign_ins = rush.go()
    finally:
        locker.join()
    counts = statuses(signups, sign_ins)
    print(f"while locked {HOLD_SECONDS} s: {dict(counts)}")
    assert set(counts) <= {303, 503}, counts  # never a 500
    assert counts[503], "no request waited past the busy timeout: the lock was not in the way"

    exist = usernames_in(database)
    refused_but_created = 0
    for name, (status, client) in signups.items():
        if status == 303:
            assert name in exist, f"{name} was answered as signed up but does not exist"
            assert signed_in_as(client) == name
        else:
            assert signed_in_as(client) is None, f"{name}: 503 but signed in"
            if name in exist:  # the user was stored; a later write of the sign-up failed
                refused_but_created += 1
                client, token = form(live, "/login")
                assert sign_in(client, token, name, PASSWORD)[0] == 303, f"{name} half-made"
    for status, client in sign_ins:
        assert signed_in_as(client) == (live.username if status == 303 else None)
    print(f"sign-ups answered 503 whose user was nevertheless created: {refused_but_created}")

    assert Client(live).request("/healthz").status == 200  # the lock is gone: service is back
    signups, sign_ins = Rush(live, "after").go()
    assert statuses(signups, sign_ins) == {303: SIGNUPS + SIGN_INS}
    assert set(signups) <= usernames_in(database)
