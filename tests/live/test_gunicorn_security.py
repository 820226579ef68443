"""Against a real gunicorn with two workers: sessions that must end do end (ASVS V3.3).

Every client here is its own cookie jar, and every request a new connection (urllib sends
`Connection: close`), so either worker may serve it: an ended session has to be gone from the
shared store and database, not just from one worker's memory. Each test first shows the state
it is about to destroy, so that it fails when nothing is destroyed.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from http.cookiejar import Cookie, CookieJar
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import LiveServer

pytestmark = pytest.mark.live

#: WEBAPP_SECURE_COOKIES=false in the fixture: no __Host- prefix on plain HTTP.
SESSION = "session"
REMEMBER = "remember"
NEW_PASSWORD = "a different, equally long passphrase"


class _KeepEveryResponse(urllib.request.HTTPErrorProcessor):
    """Hand back 3xx and 4xx as they are: the tests check redirects rather than follow them."""

    def http_response(self, request: urllib.request.Request, response: Any) -> Any:
        return response

    https_response = http_response


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def location(self) -> tuple[str, str]:
        """The redirect target's path and query."""
        target = urllib.parse.urlsplit(self.headers["Location"] or "")
        return target.path, target.query


class Client:
    """One browser: a cookie jar, and a new connection per request (like test_gunicorn's)."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _KeepEveryResponse
        )

    def request(self, path: str, data: dict[str, str] | None = None) -> Reply:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        url = self.server.url(path)  # always http://127.0.0.1:PORT/...
        request = urllib.request.Request(url, data=body)  # noqa: S310
        with self.opener.open(request, timeout=10) as response:
            return Reply(response.status, response.headers, response.read())

    def cookie(self, name: str) -> str | None:
        return next((cookie.value for cookie in self.jar if cookie.name == name), None)

    def plant(self, name: str, value: str) -> None:
        """Put a cookie in the jar as if the server had set it: a stolen cookie, replayed."""
        host = urllib.parse.urlsplit(self.server.base_url).hostname or ""
        self.jar.set_cookie(
            Cookie(
                version=0,
                name=name,
                value=value,
                port=None,
                port_specified=False,
                domain=host,
                domain_specified=False,
                domain_initial_dot=False,
                path="/",
                path_specified=True,
                secure=False,
                expires=None,
                discard=True,
                comment=None,
                comment_url=None,
                rest={},
            )
        )

    def state(self) -> dict[str, Any]:
        """What GET /session says about this client."""
        reply = self.request("/session")
        assert reply.status == 200, reply.text
        return reply.json()

    def username(self) -> str | None:
        return self.state().get("user", {}).get("username")

    def csrf(self, path: str) -> str:
        """The CSRF token of the page at `path` (its <meta>, and its forms' field if any)."""
        page = self.request(path)
        assert page.status == 200, f"GET {path}: {page.status}\n{page.text}"
        field, meta = csrf_tokens(page.text)
        assert meta, f"GET {path} carries no <meta name=csrf-token>"
        assert field in (None, meta), f"GET {path}: the form and the page carry different tokens"
        return meta


class _CsrfFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.field: str | None = None
        self.meta: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("name") == "csrf_token" and self.field is None:
            self.field = values.get("value")
        if tag == "meta" and values.get("name") == "csrf-token":
            self.meta = values.get("content")


def csrf_tokens(html: str) -> tuple[str | None, str | None]:
    """The first hidden csrf_token field and the page's <meta name="csrf-token">."""
    finder = _CsrfFinder()
    finder.feed(html)
    return finder.field, finder.meta


def signed_in(server: LiveServer, *, remember: bool = False, password: str | None = None) -> Client:
    """A new client signed in as alice through the form."""
    client = Client(server)
    data = {
        "username": server.username,
        "password": password or server.password,
        "csrf_token": client.csrf("/login"),
        "next": "",
    }
    if remember:
        data["remember"] = "y"
    reply = client.request("/login", data=data)
    assert reply.status == 303, reply.text
    assert reply.location == ("/profile", "")
    assert client.cookie(SESSION), "sign-in set no session cookie"
    if remember:
        assert client.cookie(REMEMBER), "sign-in with remember=y set no remember cookie"
    assert client.username() == server.username
    return client


def replaying(server: LiveServer, **cookies: str) -> Client:
    """A fresh client that sends only these cookies (as stolen from another)."""
    client = Client(server)
    for name, value in cookies.items():
        client.plant(name, value)
    return client


def assert_sent_to_sign_in(client: Client) -> None:
    """GET /profile does not get in, not even by redeeming a remember cookie, and the client
    is still not signed in afterwards."""
    reply = client.request("/profile")
    assert reply.status == 302, f"GET /profile: {reply.status}\n{reply.text}"
    assert reply.location == ("/login", "next=%2Fprofile")
    assert client.state() == {}


def change_password(client: Client, current: str, new: str) -> Reply:
    return client.request(
        "/account/password",
        data={
            "current_password": current,
            "new_password": new,
            "confirm": new,
            "csrf_token": client.csrf("/account/password"),
        },
    )


def test_v3_3_4_revoke_others_ends_a_second_client_at_its_next_poll(
    live_server: LiveServer,
) -> None:
    first = signed_in(live_server)
    second = signed_in(live_server, remember=True)
    assert second.username() == live_server.username  # B's poll sees the user before

    revoked = first.request(
        "/account/sessions/revoke-others",
        data={"password": live_server.password, "csrf_token": first.csrf("/account/sessions")},
    )
    assert revoked.status == 303, revoked.text
    assert revoked.location == ("/account/sessions", "")

    # B's very next request, a poll, finds no session, whichever worker answers it.
    assert second.state() == {}
    # Its remember-me token was ended too: it cannot sign B back in.
    assert_sent_to_sign_in(second)

    # A is untouched.
    assert first.username() == live_server.username
    assert first.request("/account/sessions").status == 200


def test_v3_3_1_replayed_remember_cookie_is_dead_after_sign_out(live_server: LiveServer) -> None:
    leaving = signed_in(live_server, remember=True)
    stolen = leaving.cookie(REMEMBER)
    assert stolen

    # The mechanism works: another sign-in's remember cookie alone, in a fresh client, signs
    # it in on a real request (the /session poll is read-only and never redeems one).
    staying = signed_in(live_server, remember=True)
    remembered = replaying(live_server, **{REMEMBER: staying.cookie(REMEMBER) or ""})
    assert remembered.state() == {}
    profile = remembered.request("/profile")
    assert profile.status == 200, f"GET /profile: {profile.status}\n{profile.text}"
    assert f"Welcome, {live_server.name}!" in profile.text
    assert remembered.username() == live_server.username

    signed_out = leaving.request("/logout", data={"csrf_token": leaving.csrf("/logout")})
    assert signed_out.status == 303, signed_out.text
    assert signed_out.location == ("/login", "")
    assert leaving.cookie(SESSION) is None
    assert leaving.cookie(REMEMBER) is None, "sign-out must delete the remember cookie"
    assert leaving.state() == {}

    # The signed-out device's remember cookie, replayed: the token is gone on the server.
    assert_sent_to_sign_in(replaying(live_server, **{REMEMBER: stolen}))
    # Signing out one device leaves the others alone.
    assert remembered.username() == live_server.username
    assert staying.username() == live_server.username


def test_v3_3_3_replayed_pre_password_change_cookie_is_dead(live_server: LiveServer) -> None:
    """Changes alice's password and sets it back, so it runs last in this module (the server,
    and so alice, are shared by this module's tests only)."""
    changer = signed_in(live_server)
    other = signed_in(live_server, remember=True)
    old_sid = changer.cookie(SESSION)
    assert old_sid
    # Before: the cookie, replayed from elsewhere, is as good as the original.
    assert replaying(live_server, **{SESSION: old_sid}).username() == live_server.username
    assert other.username() == live_server.username

    changed = change_password(changer, live_server.password, NEW_PASSWORD)
    assert changed.status == 303, changed.text
    try:
        assert changed.location == ("/account/sessions", "")
        new_sid = changer.cookie(SESSION)
        assert new_sid, "the password change dropped the session cookie"
        assert new_sid != old_sid, "a password change must give the session a new id"

        assert replaying(live_server, **{SESSION: old_sid}).state() == {}
        assert other.state() == {}
        assert_sent_to_sign_in(other)  # and its remember-me token is gone
        assert changer.username() == live_server.username
        assert changer.request("/account/sessions").status == 200
    finally:
        # Put alice's password back (the session is still fresh) whatever happened above.
        restored = change_password(changer, NEW_PASSWORD, live_server.password)
        assert restored.status == 303, restored.text
    signed_in(live_server)  # the original password works again
