"""Against a real gunicorn: what runs beside the requests, and what the poll path meets first.

gunicorn.conf.py's post_worker_init starts each worker's background pruning; only a real
gunicorn shows that it runs, so expired sessions are deleted here (store files and index rows)
while nobody sends a request. And a Cookie header holding a byte that is not UTF-8 reaches the
poll fast path before anything else: it must be answered, with the security headers, not
turned into gunicorn's bare 500 page.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import _create_user, _environment, gunicorn
from live_client import SESSION, signed_in

from webapp.web.security_headers import HEADERS

if TYPE_CHECKING:
    from conftest import LiveServer

pytestmark = pytest.mark.live

#: Short enough to watch sessions expire and be pruned; long enough that a sign-in followed
#: by a poll stays inside it on a busy machine.
IDLE_TIMEOUT = 6
PRUNE_INTERVAL = 1
#: How long the pruning may take to show: the idle timeout, a run, and a busy machine.
PRUNE_DEADLINE = 60.0


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's instance folder: files + SQLite, read directly by the tests."""
    return tmp_path_factory.mktemp("gunicorn") / "instance"


@pytest.fixture(scope="module")
def server(instance: Path) -> Iterator[LiveServer]:
    env = _environment(instance, 1, idle_timeout=IDLE_TIMEOUT, touch_interval=1)
    env["WEBAPP_PRUNE_INTERVAL"] = str(PRUNE_INTERVAL)
    _create_user(env)
    with gunicorn(env, instance.parent, 1, idle_timeout=IDLE_TIMEOUT, touch_interval=1) as live:
        yield live


def store_entries(instance: Path) -> list[str]:
    return sorted(path.name for path in (instance / "sessions").iterdir() if path.is_file())


def index_rows(instance: Path) -> int:
    with sqlite3.connect(instance / "webapp.db") as database:
        return int(database.execute("SELECT count(*) FROM user_sessions").fetchone()[0])


def settled_access_count(server: LiveServer) -> int:
    """The access log's length once it stops growing: gunicorn writes a request's line after
    its answer, so the sign-ins' last lines may still be on their way."""
    count = len(server.access_lines())
    while True:
        time.sleep(0.3)
        now = len(server.access_lines())
        if now == count:
            return count
        count = now


def test_expired_sessions_are_pruned_without_any_request(
    server: LiveServer, instance: Path
) -> None:
    for _ in range(3):
        signed_in(server)
    assert len(store_entries(instance)) == 3 and index_rows(instance) == 3, server.output()
    requests = settled_access_count(server)
    deadline = time.monotonic() + PRUNE_DEADLINE
    while store_entries(instance) or index_rows(instance):
        if time.monotonic() > deadline:
            pytest.fail(
                f"after {PRUNE_DEADLINE} s still {store_entries(instance)} and "
                f"{index_rows(instance)} index rows\n{server.output()}"
            )
        time.sleep(0.2)
    assert len(server.access_lines()) == requests  # nobody asked for it


def raw_poll(server: LiveServer, cookie: bytes) -> tuple[int, dict[str, str], bytes]:
    """GET /session with a Cookie header sent byte for byte (http.client encodes latin-1)."""
    netloc = urllib.parse.urlsplit(server.base_url).netloc
    connection = http.client.HTTPConnection(netloc, timeout=10)
    try:
        connection.request("GET", "/session", headers={"Cookie": cookie.decode("latin-1")})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_cookie_byte_that_is_not_utf8_gets_an_answer_with_security_headers(
    server: LiveServer,
) -> None:
    """It was gunicorn's bare 500 page (the fast path's cookie parser raised)."""
    client = signed_in(server)
    sid = client.cookie(SESSION)
    assert sid
    for cookie, user in (
        (b"x=\xff", None),
        (b"x=\xff; " + SESSION.encode() + b"=" + sid.encode(), server.username),
        (SESSION.encode() + b"=" + sid.encode() + b"; y=\xc3\x28\xff", server.username),
    ):
        status, headers, body = raw_poll(server, cookie)
        assert status == 200, f"{cookie!r}: {status}\n{body[:500]!r}\n{server.output()}"
        for name, value in HEADERS.items():
            assert headers.get(name) == value, (cookie, name, headers)
        answer = json.loads(body)
        assert answer.get("user", {}).get("username") == user, (cookie, answer)
