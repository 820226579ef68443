"""Hostile input on the poll fast path: whatever a client sends to GET /session, never a 5xx.

The fast path (webapp/widget/fast_path.py) answers before Flask's request cycle, so Flask's
error handling and security headers do not cover it: it must answer well itself, or hand the
request to the Flask route. Property-based (hypothesis) over the WSGI app itself, called with
environs as a server builds them (PEP 3333: header bytes as latin-1 strings): cookies with any
bytes, the poll protocol's and htmx's headers, query strings. Every answer must be below 500
and carry the security headers. test_hostile_input.py covers every route through Flask.

Examples per property: HOSTILE_INPUT_EXAMPLES (default 60), as in test_hostile_input.py; with
CI set, hypothesis is derandomized so that CI runs are reproducible.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from helpers import AuthActions, session_cookie
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, run_wsgi_app

from webapp.web.security_headers import HEADERS
from webapp.widget import state as widget
from webapp.widget.fast_path import PollFastPath

FAST_PATH_HOSTILE = settings(
    max_examples=int(os.environ.get("HOSTILE_INPUT_EXAMPLES", "60")),
    deadline=None,  # requests touch real servers (PostgreSQL, Redis): timings vary
    derandomize=bool(os.environ.get("CI")),
    database=None,  # nothing written into the tree; a failure prints its example
    print_blob=True,
    # The app and alice's session are made once per test, on purpose: the fast path and
    # GET /session never write, so examples cannot change them.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Bytes as a server hands them over in a WSGI environ (PEP 3333: latin-1 strings).
raw_text = st.binary(max_size=80).map(lambda b: b.decode("latin-1"))
latin1_text = st.one_of(
    raw_text,
    st.sampled_from(("", "true", "false", "garbage", "\x00", "a" * 9000, "é\xff\xfe", "\r\n")),
)
cookie_values = st.one_of(
    st.sampled_from(
        (
            "",
            "garbage",
            "\xff",
            "é\xff",
            "\xc3\x28",
            '"\\000"',
            '"unterminated',
            "=;=",
            "x" * 8000,
            "a" * 16 + "." + "b" * 43,
        )
    ),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80),
    raw_text,
)
cookie_names = st.sampled_from(("session", "csrf", "remember", "__Host-session", "x", "", "\xff"))


@dataclass
class Poller:
    """The fast path, and alice's session id (signed in once: polls never write)."""

    app: Flask
    fast: PollFastPath
    sid: str

    def poll(self, overrides: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """GET /session through the WSGI app as a server would call it, `overrides` put into
        the environ as given (werkzeug's Headers would refuse some of these values)."""
        environ = EnvironBuilder(path="/session", method="GET").get_environ()
        environ.update(overrides)
        app_iter, status, headers = run_wsgi_app(self.fast, environ, buffered=True)
        body = b"".join(app_iter)
        return int(status.split()[0]), dict(headers), body


@pytest.fixture
def poller(app: Flask, user: Any) -> Poller:
    client = app.test_client()
    assert AuthActions(client).login().status_code == 303
    fast = app.wsgi_app
    assert isinstance(fast, PollFastPath)
    sid = session_cookie(client)
    assert sid
    return Poller(app, fast, sid)


def check(status: int, headers: dict[str, str], body: bytes, what: Any) -> None:
    assert status < 500, f"{what} -> {status}\n{body[:2000]!r}"
    for name, value in HEADERS.items():
        assert headers.get(name) == value, f"{what} -> {status}: no {name}\n{headers}"
    assert b"Traceback" not in body, what


def cookie_header(pairs: list[tuple[str, str]]) -> str:
    return "; ".join(f"{name}={value}" for name, value in pairs)


# the properties --------------------------------------------------------------------------------


@FAST_PATH_HOSTILE
@given(data=st.data())
def test_hostile_cookies(poller: Poller, data: st.DataObject) -> None:
    """Cookies with any bytes, before, after or instead of alice's session cookie; or a
    Cookie header that is any bytes at all."""
    if data.draw(st.integers(0, 4), label="whole header raw") == 0:
        header = data.draw(raw_text, label="Cookie")
    else:
        hostile = data.draw(st.lists(st.tuples(cookie_names, cookie_values), max_size=5))
        own = [("session", poller.sid)] if data.draw(st.booleans(), label="signed in") else []
        where = data.draw(st.sampled_from(("before", "after")), label="where")
        header = cookie_header(hostile + own if where == "before" else own + hostile)
    overrides = {"HTTP_COOKIE": header}
    if data.draw(st.booleans(), label="htmx"):
        overrides["HTTP_HX_REQUEST"] = "true"
    check(*poller.poll(overrides), overrides)


#: The headers a poll reads, as WSGI names them.
POLL_HEADERS = (
    "HTTP_HX_REQUEST",
    "HTTP_HX_BOOSTED",
    "HTTP_HX_CURRENT_URL",
    "HTTP_" + widget.STATE_HEADER.upper().replace("-", "_"),
    "HTTP_" + widget.REQUIRED_HEADER.upper().replace("-", "_"),
    "HTTP_ACCEPT",
    "HTTP_HOST",
    "HTTP_X_FORWARDED_FOR",
)


@FAST_PATH_HOSTILE
@given(data=st.data())
def test_hostile_headers(poller: Poller, data: st.DataObject) -> None:
    """htmx's and the widget's headers, Accept and Host, with any bytes, signed in or not."""
    overrides = {}
    if data.draw(st.booleans(), label="signed in"):
        overrides["HTTP_COOKIE"] = f"session={poller.sid}"
    for _ in range(data.draw(st.integers(1, 5), label="headers")):
        name = data.draw(st.sampled_from(POLL_HEADERS), label="name")
        overrides[name] = data.draw(st.one_of(st.just("true"), latin1_text), label=name)
    check(*poller.poll(overrides), overrides)


@FAST_PATH_HOSTILE
@given(data=st.data())
def test_hostile_query_strings(poller: Poller, data: st.DataObject) -> None:
    """Query strings with any bytes (the fast path ignores them; the route must too)."""
    overrides = {"QUERY_STRING": data.draw(latin1_text, label="QUERY_STRING")}
    if data.draw(st.booleans(), label="signed in"):
        overrides["HTTP_COOKIE"] = f"session={poller.sid}"
    if data.draw(st.booleans(), label="htmx"):
        overrides["HTTP_HX_REQUEST"] = "true"
    check(*poller.poll(overrides), overrides)


# what the properties found ----------------------------------------------------------------------


@pytest.mark.parametrize("cookie", ["x=\xff; session={sid}", "session={sid}; x=\xc3\x28", "\xff"])
def test_a_cookie_that_is_not_utf8_is_answered_as_flask_reads_it(poller, cookie):
    """werkzeug.http.parse_cookie raised UnicodeDecodeError on a non-UTF-8 byte in any cookie:
    GET /session was a bare 500 without security headers. Now the fast path reads cookies
    as Flask does, and answers itself."""
    environ = EnvironBuilder(path="/session").get_environ()
    environ["HTTP_COOKIE"] = cookie.format(sid=poller.sid)
    assert poller.fast.answer(environ) is not None
    status, headers, body = poller.poll({"HTTP_COOKIE": cookie.format(sid=poller.sid)})
    check(status, headers, body, cookie)
    assert status == 200
    answer = json.loads(body)
    assert (answer["user"]["username"] == "alice") if "{sid}" in cookie else answer == {}


def test_whatever_the_fast_path_cannot_handle_goes_to_the_route(poller, monkeypatch, caplog):
    """Any exception inside the fast path: the Flask route answers (logged, never a 500)."""

    def broken(environ: dict[str, Any]) -> None:
        raise RuntimeError("a bug in the fast path")

    monkeypatch.setattr(poller.fast, "answer", broken)
    caplog.set_level(logging.WARNING, logger="webapp.widget.fast_path")
    status, headers, body = poller.poll({"HTTP_COOKIE": f"session={poller.sid}"})
    check(status, headers, body, "broken fast path")
    assert status == 200 and json.loads(body)["user"]["username"] == "alice"
    assert "poll fast path failed; the Flask route answers" in caplog.text
    assert "a bug in the fast path" in caplog.text
