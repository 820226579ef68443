"""An HTTP client for the live tests: one browser is one cookie jar, and every request a new
connection (urllib sends `Connection: close`), so either worker (or host) may serve it."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from http.cookiejar import Cookie, CookieJar
from typing import Any, Protocol

#: WEBAPP_SECURE_COOKIES=false in the live servers: no __Host- prefix on plain HTTP.
SESSION = "session"
REMEMBER = "remember"


class Server(Protocol):
    """What a client needs of a live server (conftest's LiveServer)."""

    base_url: str
    username: str
    password: str

    def url(self, path: str) -> str: ...


class KeepEveryResponse(urllib.request.HTTPErrorProcessor):
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
    """One browser: a cookie jar, and a new connection per request."""

    #: Seconds to wait for an answer.
    timeout = 10

    def __init__(self, server: Server) -> None:
        self.server = server
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), KeepEveryResponse
        )

    def request(
        self,
        path: str,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> Reply:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        url = self.server.url(path)  # always http://127.0.0.1:PORT/...
        request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
        with (opener or self.opener).open(request, timeout=self.timeout) as response:
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


def signed_in(server: Server, *, remember: bool = False, password: str | None = None) -> Client:
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


def replaying(server: Server, **cookies: str) -> Client:
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
