"""Against a real gunicorn with two workers: sign in, poll /session, sign out.

In-process tests share one app object; only separate worker processes show that the secret
key and the session store are really shared, and that polls never write a cookie.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from live_client import Client as Browser
from live_client import KeepEveryResponse, Reply, csrf_tokens

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import AccessLine, LiveServer

pytestmark = pytest.mark.live

POLLS = 100
MAX_POLLS = 1000
COOKIE = "session"  # WEBAPP_SECURE_COOKIES=false: no __Host- prefix on plain HTTP
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")  # next-auth's, to the ms


def location_path(reply: Reply) -> str:
    return urllib.parse.urlsplit(reply.headers["Location"]).path


def wait_for_access_lines(server: LiveServer, user_agent: str, count: int) -> list[AccessLine]:
    """gunicorn logs a request after answering it, so the last lines may lag the replies."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in server.access_lines() if line.user_agent == user_agent]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_sign_in_poll_on_both_workers_sign_out(live_server: LiveServer) -> None:
    """Polls served by either worker see the same signed-in session and never set a cookie;
    after sign-out the old cookie is worth nothing on the server."""
    browser = Browser(live_server)

    login_page = browser.request("/login")
    assert login_page.status == 200
    token, _meta = csrf_tokens(login_page.text)
    assert token, "the sign-in form has no csrf_token field"
    assert browser.cookie(COOKIE) is None, "anonymous visitors get no server-side session"
    assert browser.cookie("csrf"), "GET /login set no signed cookie to tie the CSRF token to"

    signed_in = browser.request(
        "/login",
        data={
            "username": live_server.username,
            "password": live_server.password,
            "csrf_token": token,
            "next": "",
        },
    )
    assert signed_in.status == 303, signed_in.text
    assert location_path(signed_in) == "/profile"
    sid = browser.cookie(COOKIE)
    assert sid, "sign-in set no session cookie"

    marker = f"live-poll-{uuid.uuid4()}"

    def poll(_: int) -> Reply:
        return browser.request("/session", headers={"User-Agent": marker})

    # Several at a time, each on its own connection. Which worker accepts a connection is the
    # kernel's choice, and a gthread worker may take a whole burst: another burst of 100 (up
    # to MAX_POLLS) until both workers have served some.
    replies: list[Reply] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(replies) < MAX_POLLS:
            replies += pool.map(poll, range(POLLS))
            served = {line.pid for line in wait_for_access_lines(live_server, marker, len(replies))}
            if len(served) == 2:
                break

    now = datetime.now(UTC)
    for reply in replies:
        assert reply.status == 200
        assert reply.headers.get_all("Set-Cookie") is None, "a poll must never set a cookie"
        assert reply.headers["Cache-Control"] == "private, no-store"
        state = reply.json()
        assert state["user"] == {
            "id": state["user"]["id"],
            "username": live_server.username,
            "name": live_server.name,
            "email": live_server.email,
        }
        assert isinstance(state["user"]["id"], str)
        assert ISO_UTC.fullmatch(state["expires"]), state["expires"]
        expires = datetime.strptime(state["expires"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert expires.replace(tzinfo=UTC) > now
    assert browser.cookie(COOKIE) == sid

    lines = wait_for_access_lines(live_server, marker, len(replies))
    assert len(lines) == len(replies), live_server.output()
    assert {line.request for line in lines} == {"GET /session HTTP/1.1"}
    assert {line.status for line in lines} == {200}
    pids = {line.pid for line in lines}
    assert len(pids) == 2, f"polls were served by workers {pids} only\n{live_server.output()}"
    assert pids <= live_server.worker_pids()

    confirm = browser.request("/logout")
    assert confirm.status == 200
    field, meta = csrf_tokens(confirm.text)
    assert field and field == meta, "the sign-out form and the page carry different tokens"

    signed_out = browser.request("/logout", data={"csrf_token": field})
    assert signed_out.status == 303, signed_out.text
    assert location_path(signed_out) == "/login"
    assert browser.cookie(COOKIE) is None, "sign-out must delete the session cookie"
    assert browser.request("/session").json() == {}

    # The old cookie, replayed as if stolen: the server-side entry must be gone.
    no_jar = urllib.request.build_opener(KeepEveryResponse)
    replay = browser.request("/session", headers={"Cookie": f"{COOKIE}={sid}"}, opener=no_jar)
    assert replay.status == 200
    assert replay.json() == {}
    assert replay.headers.get_all("Set-Cookie") is None
