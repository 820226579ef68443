"""Hostile input: whatever a client sends, never a 5xx.

Property-based (hypothesis) over every route of `app.url_map` and every method it accepts,
anonymous and signed in: hostile forms (right and random field names, repeated fields, NUL
characters, oversized values up to and beyond MAX_CONTENT_LENGTH, valid, missing and garbage
CSRF tokens), query strings (hostile `next` values, bytes that are not UTF-8), headers (htmx's,
the widget's, Accept, Content-Type, client addresses), cookies (huge, many, garbage session
ids and signed cookies) and raw bodies. Every answer must be below 500; a 4xx must be clear
(JSON with a message for scripts, an HTML page showing its message otherwise, never a
traceback); a redirect (or htmx's HX-Redirect) must name a path on this site.

Routes are read from the app, so a new route is covered at once; one this module has no
strategy for (its form's fields, its URL arguments) fails `test_every_route_has_a_strategy`.
The focused tests after the properties pin each fix that these found.

Examples per property and seeds: the hypothesis profile (tests/conftest.py). By default the
"ci" profile, derandomized: every run tries the same 60 examples per property. `make fuzz`
explores with random seeds and 1,000 examples, and saves what fails under .hypothesis/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import pytest
from flask import Flask
from helpers import PASSWORD, AuthActions, FakeClock, csrf_token
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict
from werkzeug.routing import Rule
from werkzeug.test import TestResponse, encode_multipart
from wtforms.fields.core import UnboundField

from webapp import create_app, throttle, users
from webapp.db import get_db
from webapp.forms import (
    ChangePasswordForm,
    LoginForm,
    LogoutForm,
    PasswordConfirmForm,
    ProfileForm,
    SignupForm,
)
from webapp.signin.recovery import ForgotForm, ResetForm
from webapp.signin.security import CodeForm, PasskeyNameForm
from webapp.signin.verify import VerifyForm
from webapp.users import find_user

# settings ------------------------------------------------------------------------------------

#: Examples, seeds and the example database come from the profile tests/conftest.py loads
#: ("ci": derandomized; "fuzz": `make fuzz`).
HOSTILE = settings(
    deadline=None,  # requests touch real servers (PostgreSQL, Redis): timings vary
    # The app, its database and the signed-in visitor are made once per test, on purpose:
    # examples share them (and say so: see Visitors), which keeps the module fast.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MAX_CONTENT_LENGTH = 1024 * 1024


def form_fields(form: type) -> tuple[str, ...]:
    return tuple(sorted(n for n in dir(form) if isinstance(getattr(form, n), UnboundField)))


#: Every endpoint's form fields (besides csrf_token). A route missing here fails the suite.
FORM_FIELDS: dict[str, tuple[str, ...]] = {
    "static": (),
    "auth.login": form_fields(LoginForm),
    "auth.logout": form_fields(LogoutForm),
    "auth.signup": form_fields(SignupForm),
    "account.sessions": (),
    "account.revoke": form_fields(PasswordConfirmForm),
    "account.revoke_others": form_fields(PasswordConfirmForm),
    "account.confirm_sessions": form_fields(PasswordConfirmForm),
    "account.password": form_fields(ChangePasswordForm),
    "account.reauthenticate": form_fields(PasswordConfirmForm),
    "account.profile": form_fields(ProfileForm),
    "pages.index": (),
    "pages.profile": (),
    "pages.hello": (),
    "pages.healthz": (),
    "pages.email": (),
    "preferences.preferences": (),
    "preferences.save_preferences": ("theme", "next"),
    "basket.show": (),
    "basket.add": ("sku", "quantity"),
    "basket.remove": (),
    "widget.session_state": (),
    "widget.keepalive": ("next",),
    "widget.csrf_token": (),
    "second_factor.verify": form_fields(VerifyForm),
    "security.security": (),
    "security.totp_setup": (),
    "security.totp_confirm": form_fields(CodeForm),
    "security.totp_disable": (),
    "security.recovery_codes": (),
    "security.passkey_rename": form_fields(PasskeyNameForm),
    "security.passkey_remove": (),
    # JSON routes: a form is as hostile to them as anything else.
    "passkeys.register_options": (),
    "passkeys.register": ("name",),
    "passkeys.sign_in_options": (),
    "passkeys.sign_in": (),
    "oidc.login": ("next",),
    "oidc.callback": ("state", "code", "error", "iss"),
    "oidc.backchannel_logout": ("logout_token",),
    "oidc.providers": (),
    "oidc.account_providers": (),
    "oidc.link": (),
    "oidc.unlink": (),
    "oidc.reauthenticate": ("next",),
    "recovery.forgot": form_fields(ForgotForm),
    "recovery.reset": form_fields(ResetForm),
    "recovery.verify_email": (),
    "recovery.not_me": (),
}

# values ----------------------------------------------------------------------------------------

#: Sizes around every limit: usernames (64), passwords (128), names (100), emails (254),
#: `next` (2048), a header field (8190), and the body (MAX_CONTENT_LENGTH).
SIZES = (0, 1, 11, 12, 64, 65, 100, 101, 128, 129, 254, 255, 2048, 2049, 8190, 70_000)
BIG_SIZES = (MAX_CONTENT_LENGTH - 200, MAX_CONTENT_LENGTH, MAX_CONTENT_LENGTH + 1)
TOO_LARGE = "The request is too large (the limit is 1 MiB)."
URLENCODED_TYPE = "application/x-www-form-urlencoded"

HOSTILE_NEXT = (
    "//evil.example",
    "\\\\evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "/%2F/evil.example",
    "/%5Cevil.example",
    "%2F%2Fevil.example",
    "http://evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/\r\nLocation: http://evil.example",
    "/%0d%0aSet-Cookie:%20x=y",
    "/\tevil",
    "/%09/evil.example",
    " //evil.example",
    "/.//evil.example",
    "///evil.example",
    "/profile",
    "/account/sessions?x=1",
    "/" + "a" * 3000,
    "/\x00",
    "\x00//evil.example",
    "/😀",
)

SPECIAL_TEXT = (
    "",
    " ",
    PASSWORD,
    "alice",
    "ALICE",
    "alice@example.com",
    "\x00",
    "a\x00b",
    "\x01\x02\x7f",
    "\r\n",
    "\ufeff\u202e",
    "😀" * 40,
    "%ff%fe",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../../etc/passwd",
    "İ" * 64,
    "true",
    *HOSTILE_NEXT,
)

text_values = st.one_of(
    st.sampled_from(SPECIAL_TEXT),
    st.text(max_size=40),  # any code point but surrogates (no form encoding can carry one)
    st.builds(lambda size, char: char * size, st.sampled_from(SIZES), st.sampled_from("x😀\x00")),
)
big_values = st.sampled_from(BIG_SIZES).map(lambda size: "y" * size)
field_names = st.one_of(
    st.sampled_from(("csrf_token", "next", "x", "", "username[]", "a\x00b")), st.text(max_size=12)
)
#: Bytes as a server hands them over in a WSGI environ (PEP 3333: latin-1 strings).
raw_text = st.binary(max_size=60).map(lambda b: b.decode("latin-1"))
latin1_text = st.one_of(
    raw_text,
    st.sampled_from(("", "true", "false", "garbage", "\x00", "a" * 9000, "é\xff\xfe")),
    st.sampled_from(HOSTILE_NEXT).filter(lambda v: v.isascii()),
)

# routes ----------------------------------------------------------------------------------------

#: Methods sent besides each route's own: the app must answer 405 (clearly) to them.
OTHER_METHODS = ("PUT", "DELETE", "PATCH", "TRACE", "FOO")


@dataclass(frozen=True)
class Route:
    rule: Rule
    method: str

    @property
    def endpoint(self) -> str:
        return self.rule.endpoint


def routes(app: Flask) -> list[Route]:
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods or ()):
            found.append(Route(rule, method))
        found.extend(Route(rule, method) for method in OTHER_METHODS)
    return found


#: Values for URL arguments, by argument name; "<live>" stands for a real session reference.
PATH_ARGS: dict[str, st.SearchStrategy[str]] = {
    "filename": st.one_of(
        st.sampled_from(
            (
                "css/app.css",
                "js/session.js",
                "vendor/htmx/htmx.min.js",
                "../webapp/__init__.py",
                "..%2f..%2fetc%2fpasswd",
                "/etc/passwd",
                "css/../../setup.cfg",
                "a\x00b",
                "😀",
                "x" * 3000,
            )
        ),
        st.text(max_size=30),
    ),
    "passkey_id": st.one_of(
        st.sampled_from(("1", "0", "2", "99999999999999999999999", "-1", "a", "😀")),
        st.text(max_size=20),
    ),
    "ref": st.one_of(
        st.just("<live>"),
        st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
        st.sampled_from(("a\x00b", "x" * 5000, "%00", "../revoke-others", "😀")),
        st.text(max_size=20),
    ),
    "sku": st.one_of(
        st.sampled_from(("tea", "caviar", "a\x00b", "x" * 5000, "%00", "../items", "😀")),
        st.text(max_size=20),
    ),
    "name": st.one_of(  # an OpenID provider's name
        st.sampled_from(("test", "a\x00b", "x" * 3000, "..", "😀")),
        st.text(max_size=20),
    ),
    # Mail links' tokens: their shape (43 URL-safe characters, none issued), and anything.
    "token": st.one_of(
        st.text(alphabet="ABCxyz019_-", min_size=43, max_size=43),
        st.sampled_from(("a\x00b", "x" * 5000, "%00", "😀")),
        st.text(max_size=50),
    ),
}
ARGUMENT = re.compile(r"<(?:(?P<converter>[^:<>]+):)?(?P<name>[^<>]+)>")


def build_path(rule: Rule, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        safe = "/" if match["converter"] == "path" else ""
        return quote(values[match["name"]], safe=safe) or "x"

    return ARGUMENT.sub(fill, rule.rule)


# visitors ------------------------------------------------------------------------------------


@dataclass
class Identity:
    """One browser's cookies and the CSRF token its pages carry."""

    cookies: dict[str, str]
    token: str


@dataclass
class Visitors:
    """An anonymous visitor and a signed-in alice, shared by a test's examples.

    An example may end alice's session (sign out, revoke, change the password, sign in again);
    `signed_in()` notices (one GET /session) and signs her in afresh, her password and the
    sign-in throttle reset first (the fake clock moves past the throttle's window).
    """

    app: Flask
    clock: FakeClock
    anonymous: Identity = field(init=False)
    _alice: Identity | None = None
    sign_ins: int = 0

    def __post_init__(self) -> None:
        browser = self.app.test_client()
        token = browser.get("/csrf").get_json()["csrfToken"]
        self.anonymous = Identity(cookie_jar(browser), token)

    def signed_in(self) -> Identity:
        if self._alice is not None and self._still_signed_in(self._alice):
            return self._alice
        with self.app.app_context():
            db = get_db()
            users.set_password(db, find_user(db, "alice"), PASSWORD)
        self.clock.advance(throttle.WINDOW.total_seconds() + 1)
        browser = self.app.test_client()
        signed = AuthActions(browser).login()
        assert signed.status_code == 303, signed.get_data(as_text=True)
        self._alice = Identity(cookie_jar(browser), csrf_token(browser))
        self.sign_ins += 1
        return self._alice

    def _still_signed_in(self, identity: Identity) -> bool:
        client = self.app.test_client(use_cookies=False)
        answer = client.get("/session", headers={"Cookie": cookie_header(identity.cookies)})
        return bool(answer.get_json())

    def identity(self, signed_in: bool) -> Identity:
        return self.signed_in() if signed_in else self.anonymous

    def live_ref(self) -> str:
        """A real session reference of alice's (for /account/sessions/<ref>/revoke)."""
        from webapp.models import UserSession

        with self.app.app_context():
            row = get_db().query(UserSession).first()
            return row.id if row is not None else "0" * 16


def cookie_jar(client: Any) -> dict[str, str]:
    """The cookies webapp sets (WEBAPP_SECURE_COOKIES is off in the tests: no __Host-)."""
    found = {name: client.get_cookie(name) for name in ("session", "csrf", "remember")}
    return {name: cookie.value for name, cookie in found.items() if cookie is not None}


def cookie_header(cookies: dict[str, str] | list[tuple[str, str]]) -> str:
    pairs = cookies.items() if isinstance(cookies, dict) else cookies
    return "; ".join(f"{name}={value}" for name, value in pairs)


@pytest.fixture
def visitors(app: Flask, user: Any, clock: FakeClock) -> Visitors:
    return Visitors(app, clock)


# the request ---------------------------------------------------------------------------------


@dataclass
class Hostile:
    """One request, as drawn: what to send and what the answer must respect."""

    route: Route
    signed_in: bool
    path: str = ""
    query: str | None = None
    raw_query: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    cookies: list[tuple[str, str]] = field(default_factory=list)
    form: list[tuple[str, str]] | None = None
    multipart: bool = False
    body: bytes | None = None
    content_type: str | None = None
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.route.method

    def send(self, app: Flask) -> TestResponse:
        client = app.test_client(use_cookies=False)
        headers = list(self.headers)
        environ = dict(self.environ)
        if self.cookies:  # raw, as a server passes it: werkzeug's Headers refuses newlines
            environ["HTTP_COOKIE"] = cookie_header(self.cookies)
        if self.raw_query is not None:
            environ["QUERY_STRING"] = self.raw_query
        kwargs: dict[str, Any] = {"headers": headers, "environ_overrides": environ}
        if self.query is not None:
            kwargs["query_string"] = self.query
        if self.form is not None and self.multipart:
            # Encoded here, in memory: the test client spools a large multipart body to a
            # temporary file that it never closes (a ResourceWarning).
            boundary, kwargs["data"] = encode_multipart(MultiDict(self.form))
            kwargs["content_type"] = f"multipart/form-data; boundary={boundary}"
        elif self.form is not None:
            kwargs["data"] = MultiDict(self.form)
        elif self.body is not None:
            kwargs["data"] = self.body
        if self.content_type is not None:
            kwargs["content_type"] = self.content_type
        return client.open(self.path, method=self.method, **kwargs)

    def check(self, app: Flask) -> None:
        """Send it and check the answer (closed after: static files hold an open file)."""
        with self.send(app) as response:
            check(self, response)


def draw_request(data: st.DataObject, app: Flask, visitors: Visitors) -> Hostile:
    """A request to any route with ordinary parts: the right cookies and CSRF token, a fitting
    form. Each property then makes one part of it hostile."""
    route = data.draw(st.sampled_from(routes(app)), label="route")
    signed_in = data.draw(st.booleans(), label="signed_in")
    identity = visitors.identity(signed_in)
    request = Hostile(route, signed_in)
    arguments = {}
    for name in route.rule.arguments:
        assert name in PATH_ARGS, f"no strategy for the URL argument <{name}> of {route.rule}"
        value = data.draw(PATH_ARGS[name], label=name)
        arguments[name] = visitors.live_ref() if value == "<live>" else value
    request.path = build_path(route.rule, arguments)
    if data.draw(st.integers(0, 4), label="double slash") == 0:
        request.path = double_slash(request.path)  # Werkzeug redirects it (merge slashes)
    request.cookies = list(identity.cookies.items())
    request.headers = [("X-CSRFToken", identity.token)] if data.draw(st.booleans()) else []
    fields = FORM_FIELDS[route.endpoint]
    request.form = [("csrf_token", identity.token)]
    for name in fields:
        if data.draw(st.integers(0, 3), label=f"has {name}"):
            request.form.append((name, data.draw(text_values, label=name)))
    request.environ["REMOTE_ADDR"] = data.draw(client_addresses, label="REMOTE_ADDR")
    return request


def double_slash(path: str) -> str:
    """The path with its second slash doubled (/account//sessions): a leading // would be a
    host to the test client."""
    head, slash, tail = path[1:].partition("/")
    return f"/{head}//{tail}" if slash else path


client_addresses = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(("127.0.0.1", "::1", "unknown", "", "a" * 100, "1.2.3.4, 5.6.7.8", "é")),
)


# what every answer must respect ---------------------------------------------------------------

ERROR_MARKERS = ('class="error-message"', 'class="form-error"', 'class="field-errors"')
TRACEBACK_MARKERS = ("Traceback (most recent call last)", "werkzeug.debug", 'File "/')


def same_site(location: str) -> bool:
    """A path on this site, as sent and percent-decoded: never //host, /\\host, a scheme, or a
    control character a browser would drop (none as sent; none in the decoded path, where a
    dropped one could make /%09/host a //host; a query may carry any byte percent-encoded)."""
    for value in (location, unquote(location)):
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or not value.startswith("/"):
            return False
        if value.startswith(("//", "/\\")) or "\\" in value.split("?")[0]:
            return False
    path = unquote(location.split("?", 1)[0])
    return not any(ord(c) < 32 or ord(c) == 127 for c in location + path)


def wants_json(request: Hostile) -> bool:
    accept = request.environ.get("HTTP_ACCEPT") or dict(request.headers).get("Accept")
    return request.path.startswith("/api/") or accept == "application/json"


def check(request: Hostile, response: TestResponse) -> None:
    status = response.status_code
    what = f"{request.method} {request.path} -> {status}"
    body = response.get_data(as_text=True)
    assert status < 500, f"{what}\n{body[:2000]}"
    for marker in TRACEBACK_MARKERS:
        assert marker not in body, f"{what}: a traceback in the answer\n{body[:2000]}"
    for name in ("Location", "HX-Redirect"):
        if name in response.headers:
            target = response.headers[name]
            assert same_site(target), f"{what}: {name} {target!r} leaves the site"
    if 300 <= status < 400 and status != 304:
        assert "Location" in response.headers, what
    if status < 400 or "HX-Redirect" in response.headers:
        return
    if request.method == "HEAD":  # no body: the headers must still say what it is
        assert response.mimetype in ("application/json", "text/html"), what
        return
    if response.is_json:
        answer = response.get_json()
        message = answer.get("error") or answer.get("message")
        assert isinstance(message, str) and message, f"{what}: JSON without a message: {answer}"
        return
    assert response.mimetype == "text/html", f"{what}: {response.mimetype}"
    assert any(marker in body for marker in ERROR_MARKERS), f"{what}: no message\n{body[:3000]}"
    # A form shown again with its errors is HTML for everyone; an error page is not for scripts.
    assert not (wants_json(request) and ERROR_MARKERS[0] in body), f"{what}: a script got HTML"


# the properties --------------------------------------------------------------------------------


def test_property_tests_are_reproducible_unless_asked_to_fuzz() -> None:
    """A fresh clone and CI try the same examples as the developer ("ci"); `make fuzz`
    explores ("fuzz") and keeps what fails."""
    ci, fuzz = settings.get_profile("ci"), settings.get_profile("fuzz")
    assert ci.derandomize and ci.database is None and ci.print_blob
    assert not fuzz.derandomize and fuzz.database is not None
    assert fuzz.max_examples > ci.max_examples
    chosen = "ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci")
    profile = settings.get_profile(chosen)
    assert (HOSTILE.derandomize, HOSTILE.max_examples, HOSTILE.database) == (
        profile.derandomize,
        profile.max_examples,
        profile.database,
    )


def test_every_route_has_a_strategy(app: Flask) -> None:
    """A new route (or URL argument) needs its form's fields here before it is covered."""
    missing = {rule.endpoint for rule in app.url_map.iter_rules()} - set(FORM_FIELDS)
    assert not missing, f"add these endpoints to FORM_FIELDS: {sorted(missing)}"
    arguments = {name for rule in app.url_map.iter_rules() for name in rule.arguments}
    assert arguments <= set(PATH_ARGS), f"add to PATH_ARGS: {sorted(arguments - set(PATH_ARGS))}"


@HOSTILE
@given(data=st.data())
def test_hostile_forms(app: Flask, visitors: Visitors, data: st.DataObject) -> None:
    """Right and random field names, repeated fields, huge values, NUL characters, and valid,
    missing or garbage CSRF tokens, urlencoded or multipart."""
    request = draw_request(data, app, visitors)
    form = request.form or []
    if data.draw(st.booleans(), label="extra fields"):
        extra = st.tuples(field_names, text_values)
        form += data.draw(st.lists(extra, max_size=6), label="extra")
    if data.draw(st.booleans(), label="repeat fields"):
        form += data.draw(st.lists(st.sampled_from(form or [("x", "")]), max_size=4))
    if data.draw(st.integers(0, 9), label="big value") == 0:
        form.append(
            (data.draw(st.sampled_from(("username", "password", "x"))), data.draw(big_values))
        )
    csrf = data.draw(st.sampled_from(("valid", "valid", "missing", "garbage", "other")))
    if csrf != "valid":
        form = [(k, v) for k, v in form if k != "csrf_token"]
        request.headers = [(k, v) for k, v in request.headers if k != "X-CSRFToken"]
    if csrf == "garbage":
        form.append(("csrf_token", data.draw(text_values)))
    if csrf == "other":  # a real token of the other visitor
        other = visitors.identity(not request.signed_in).token
        form.append(("csrf_token", other))
    request.form = form
    request.multipart = data.draw(st.booleans(), label="multipart")
    request.check(app)


@HOSTILE
@given(data=st.data())
def test_hostile_query_strings(app: Flask, visitors: Visitors, data: st.DataObject) -> None:
    """`next` and other parameters: open-redirect tricks, CRLF, very long values, repeated
    parameters, and raw bytes that are not UTF-8."""
    request = draw_request(data, app, visitors)
    pairs = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(("next", "next", "x", "page", "")),
                st.one_of(st.sampled_from(HOSTILE_NEXT), text_values),
            ),
            min_size=1,
            max_size=4,
        ),
        label="query",
    )
    if data.draw(st.booleans(), label="raw query"):
        raw = data.draw(st.binary(max_size=40), label="raw bytes")
        request.raw_query = (urlencode(pairs).encode() + b"&" + raw).decode("latin-1")
    else:
        request.query = urlencode(pairs)
    request.check(app)


HEADER_NAMES = (
    "HX-Request",
    "HX-Boosted",
    "HX-Current-URL",
    "HX-Target",
    "X-Session-State",
    "X-Session-Required",
    "Accept",
    "Content-Type",
    "X-CSRFToken",
    "X-CSRF-Token",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "User-Agent",
    "Referer",
    "Origin",
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Accept-Encoding",
    "If-None-Match",
    "X-Garbage",
)
HEADER_VALUES: dict[str, tuple[str, ...]] = {
    "HX-Request": ("true", "false", "TRUE", "1"),
    "HX-Boosted": ("true", "false"),
    "HX-Current-URL": (
        "http://localhost/profile",
        "http://localhost//evil.example",
        "http://[::1",
        "http://localhost/\r\nx",
        "javascript:alert(1)",
        "http://localhost/" + "a" * 5000,
        "http://evil.example/%2F%2Fevil",
    ),
    "Accept": (
        "application/json",
        "text/html",
        "*/*",
        "application/json;q=garbage",
        "text/html;q=0, application/json;q=0",
        ",,,;;;",
        "application/json, text/html;q=0.1",
    ),
    "Content-Type": (
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded; charset=garbage",
        "application/json",
        "text/plain",
        "garbage",
        "/",
    ),
    "X-Forwarded-For": ("garbage", "1.2.3.4", "::1, garbage", "a" * 200, ", , ,"),
    "Content-Length": ("-1", "abc", "99999999999999999999", "0", "10"),
    "Transfer-Encoding": ("chunked", "gzip", "garbage"),
}


ENVIRON_KEYS = {"Content-Type": "CONTENT_TYPE", "Content-Length": "CONTENT_LENGTH"}


@HOSTILE
@given(data=st.data())
def test_hostile_headers(app: Flask, visitors: Visitors, data: st.DataObject) -> None:
    """htmx's and the widget's headers, Accept, Content-Type (wrong, garbage, multipart
    without a boundary), client addresses, and bytes as a server passes them (latin-1)."""
    request = draw_request(data, app, visitors)
    for _ in range(data.draw(st.integers(1, 5), label="headers")):
        name = data.draw(st.sampled_from(HEADER_NAMES), label="name")
        known = HEADER_VALUES.get(name, ())
        choices = st.one_of(st.sampled_from(known), latin1_text) if known else latin1_text
        value = data.draw(choices, label=name)
        # Into the WSGI environ as a server would put them: werkzeug's Headers (which the test
        # client uses) refuses some of these values (newlines) before the app could see them.
        key = ENVIRON_KEYS.get(name) or "HTTP_" + name.upper().replace("-", "_")
        request.environ[key] = value
    request.check(app)


cookie_values = st.one_of(
    st.sampled_from(
        (
            "",
            "garbage",
            '"\\000"',
            '"a\\000b.c"',
            "x" * 4096,
            "x" * 65536,
            "a.b",
            "a" * 16 + "." + "b" * 43,
            "InRva2VuIg.Zz.x",
            '"unterminated',
            "é\xff",
            "=;=",
        )
    ),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80),
    raw_text,
)


@HOSTILE
@given(data=st.data())
def test_hostile_cookies(app: Flask, visitors: Visitors, data: st.DataObject) -> None:
    """Garbage session ids, garbage signed CSRF and remember-me cookies, huge cookies, many
    cookies, repeated names."""
    request = draw_request(data, app, visitors)
    names = st.sampled_from(("session", "csrf", "remember", "__Host-session", "x", ""))
    hostile = data.draw(st.lists(st.tuples(names, cookie_values), min_size=1, max_size=5))
    keep = data.draw(st.sampled_from(("replace", "before", "after")), label="keep")
    if keep == "replace":
        replaced = {name for name, _ in hostile}
        request.cookies = [c for c in request.cookies if c[0] not in replaced] + hostile
    elif keep == "before":
        request.cookies = hostile + request.cookies
    else:
        request.cookies = request.cookies + hostile
    if data.draw(st.integers(0, 9), label="many cookies") == 0:
        request.cookies += [(f"c{i}", "v" * 100) for i in range(300)]
    request.check(app)


BODY_TYPES = (
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=boundary",
    "application/json",
    "text/plain",
    "application/octet-stream",
    "garbage",
    "",
)


@HOSTILE
@given(data=st.data())
def test_hostile_raw_bodies(app: Flask, visitors: Visitors, data: st.DataObject) -> None:
    """Bodies that no form encoder would produce: bytes that are not UTF-8 (lone surrogates
    encoded, stray continuation bytes), broken multipart, JSON to a form, oversized bodies."""
    request = draw_request(data, app, visitors)
    token = quote(visitors.identity(request.signed_in).token)
    names = FORM_FIELDS[request.route.endpoint] or ("x",)
    parts = [b"csrf_token=" + token.encode()]
    for name in names:
        value = data.draw(
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from((b"%ff%fe", b"%ed%a0%80", b"\xed\xa0\x80", b"\xff", b"%00", b"%")),
            ),
            label=name,
        )
        parts.append(name.encode() + b"=" + value)
    body = b"&".join(parts)
    if data.draw(st.integers(0, 7), label="oversized") == 0:
        body += b"&x=" + b"z" * data.draw(st.sampled_from(BIG_SIZES))
    if data.draw(st.booleans(), label="multipart body"):
        body = (
            b'--boundary\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            + token.encode()
            + b'\r\n--boundary\r\nContent-Disposition: form-data; name="'
            + data.draw(st.binary(max_size=10))
            + b'"\r\n\r\n'
            + data.draw(st.binary(max_size=60))
            + data.draw(st.sampled_from((b"\r\n--boundary--\r\n", b"", b"\r\n--bound")))
        )
    request.form = None
    request.body = body
    request.content_type = data.draw(st.sampled_from(BODY_TYPES), label="content type")
    request.check(app)


# every route, each with the same fixed hostile requests (hypothesis may not draw them all) ------


def fixed_variants(request: Hostile, token: str) -> Iterator[Hostile]:
    def variant(**changes: Any) -> Hostile:
        copy = Hostile(**{**request.__dict__, **changes})
        copy.headers = list(changes.get("headers", request.headers))
        return copy

    fields = FORM_FIELDS[request.route.endpoint]
    yield variant(form=[("csrf_token", token)] + [(n, "a\x00b") for n in fields])
    yield variant(form=[("csrf_token", token)] + [(n, "x" * 70_000) for n in fields])
    yield variant(form=None, body=b"csrf_token=" + token.encode() + b"&x=%ff\xff\xfe")
    yield variant(
        form=None,
        body=b"z" * (MAX_CONTENT_LENGTH + 1),
        content_type="application/x-www-form-urlencoded",
    )
    yield variant(form=None, body=b"{}", content_type="multipart/form-data")
    yield variant(form=[("x", "y")])  # no CSRF token
    yield variant(raw_query="next=%ff\xff\xfe&x=\xc3")
    yield variant(query="next=" + quote("//evil.example"))
    yield variant(query="next=" + quote("/\r\nLocation: //evil"))
    yield variant(cookies=[*request.cookies, ("session", "x" * 65536)])
    yield variant(cookies=[("session", '"\\000"'), ("csrf", "garbage"), ("remember", "a.b")])
    yield variant(headers=[("Accept", "application/json"), ("X-CSRFToken", token)])
    yield variant(headers=[("HX-Request", "true"), ("HX-Current-URL", "http://[::1")])
    yield variant(
        headers=[("HX-Request", "true"), ("X-Session-Required", "1"), ("X-Session-State", "x")]
    )
    yield variant(environ={"REMOTE_ADDR": "unknown, " + "a" * 100})
    yield variant(environ={"HTTP_HOST": "a" * 64})  # not a host, nor a trusted one
    yield variant(environ={"HTTP_HOST": "evil.example"})
    yield variant(path=double_slash(request.path), raw_query="x=\n1&next=%0a//evil.example")
    yield variant(path=double_slash(request.path), environ={"HTTP_HOST": "evil.example"})


def test_every_route_and_method_with_fixed_hostile_requests(app: Flask, visitors: Visitors) -> None:
    # Each route's own methods but HEAD and OPTIONS (the properties send those, and others).
    methods = [r for r in routes(app) if r.method in (r.rule.methods or ()) - {"HEAD", "OPTIONS"}]
    for route in methods:
        for signed_in in (False, True):
            identity = visitors.identity(signed_in)
            values = {
                "filename": "css/app.css",
                "ref": visitors.live_ref(),
                "passkey_id": "1",
                "sku": "tea",
                "name": "test",
                "token": "A" * 43,
            }
            request = Hostile(
                route,
                signed_in,
                path=build_path(route.rule, values),
                cookies=list(identity.cookies.items()),
                headers=[("X-CSRFToken", identity.token)],
            )
            for variant in fixed_variants(request, identity.token):
                variant.check(app)


# focused regression tests: one per fix the properties found ------------------------------------
# (cases loop inside a test: each app costs a database, and these run on both backends)


def test_query_string_that_is_not_utf8_is_a_clear_400(app):
    """werkzeug's request.args raises UnicodeDecodeError on such bytes: it was a 500."""
    message = "The address (its query string) is not valid UTF-8."
    for path, accept, json in [
        ("/login", "text/html", False),
        ("/", "application/json", True),
        ("/api/hello", "text/html", True),
        ("/profile", "text/html", False),
    ]:
        answer = app.test_client().get(
            path, headers={"Accept": accept}, environ_overrides={"QUERY_STRING": "next=\xff\xfe"}
        )
        assert answer.status_code == 400, path
        if json:
            assert answer.get_json() == {"error": message}, path
        else:
            assert message in answer.get_data(as_text=True), path


def test_nul_character_in_the_request_line_or_a_header_is_a_clear_400(app, user):
    """Refused whatever the database (PostgreSQL cannot store one; gunicorn refuses them)."""
    client = app.test_client()
    token = csrf_token(client)
    data = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    answer = client.post("/login", data=data, headers={"User-Agent": "a\x00b"})
    assert answer.status_code == 400
    assert "The request holds a NUL character." in answer.get_data(as_text=True)
    assert client.get("/session").get_json() == {}
    AuthActions(client).login()
    revoke = client.post("/account/sessions/a%00b/revoke", data={"csrf_token": csrf_token(client)})
    assert revoke.status_code == 400
    assert "The request holds a NUL character." in revoke.get_data(as_text=True)


def test_a_host_header_that_is_not_trusted_or_not_a_host_is_a_clear_400(app):
    """No URL can be built for it, so base.html cannot render: the error page was a 500 (and
    an invalid host, with no TRUSTED_HOSTS, got 200)."""
    message = "The Host header names a host this site does not serve."
    for host in ("a" * 64, "a" * 64 + ".example:8000", "ev il", "evil.example", "localhost:0"):
        page = app.test_client().get("/", headers={"Host": host})
        assert page.status_code == 400
        assert page.mimetype == "text/html"
        assert message in page.get_data(as_text=True)
        api = app.test_client().get("/api/hello", headers={"Host": host})
        assert (api.status_code, api.get_json()) == (400, {"error": message})


def test_a_value_the_database_refuses_is_a_400_not_an_outage(app, user):
    """sqlalchemy's DataError (a NUL character or an over-long value reached PostgreSQL) was
    answered 503 "the database is not answering"; it is bad input. The error page can still
    read the database afterwards (the failed transaction is rolled back)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DataError

    def refused() -> str:
        get_db().execute(text("SELECT 1"))
        raise DataError("INSERT ...", {}, Exception("value too long for type varchar(45)"))

    app.add_url_rule("/refused", view_func=refused)
    client = app.test_client()
    AuthActions(client).login()
    answer = client.get("/refused")
    assert answer.status_code == 400
    assert "cannot be stored" in answer.get_data(as_text=True)
    assert "Retry-After" not in answer.headers
    json = client.get("/refused", headers={"Accept": "application/json"})
    assert json.status_code == 400 and "cannot be stored" in json.get_json()["error"]
    # A cookie value may be quoted with "\000", which werkzeug decodes to NUL: on PostgreSQL
    # the remember-me lookup is refused (400); on SQLite it finds nothing (200).
    planted = app.test_client().get("/", headers={"Cookie": 'remember="a\\000b.c"'})
    assert planted.status_code in (200, 400)


@pytest.fixture
def behind_a_proxy(app_config):
    app = create_app({**app_config, "PROXY_HOPS": 1})
    with app.app_context():
        users.create_user(get_db(), "alice", PASSWORD)
    return app


def test_client_address_that_is_not_an_ip_is_kept_short_and_printable(behind_a_proxy):
    """Behind a proxy, X-Forwarded-For becomes the client address, and it was stored as sent:
    on PostgreSQL a value over 45 characters (the column's size) made every sign-in a 503."""
    from webapp.models import SignInEvent, UserSession

    app = behind_a_proxy
    for forwarded in ("unknown", "a" * 200, "1.2.3.4.5", "<script>", "é" * 50, "::1,,garbage"):
        client = app.test_client()
        headers = {"X-Forwarded-For": forwarded}
        token = client.get("/csrf", headers=headers).get_json()["csrfToken"]
        data = {"username": "alice", "password": PASSWORD, "csrf_token": token}
        answer = client.post("/login", data=data, headers=headers)
        assert answer.status_code == 303, (forwarded, answer.get_data(as_text=True))
    with app.app_context():
        rows = [*get_db().query(SignInEvent).all(), *get_db().query(UserSession).all()]
        assert len(rows) == 12
        for row in rows:
            assert row.ip is None or (len(row.ip) <= 45 and row.ip.isprintable()), row.ip
        assert {row.ip for row in rows} >= {"unknown", "a" * 45, "<script>"}


def test_client_address_that_is_an_ip_is_kept_as_it_is(behind_a_proxy):
    from webapp.models import SignInEvent

    client = behind_a_proxy.test_client()
    headers = {"X-Forwarded-For": "2001:db8::1"}
    token = client.get("/csrf", headers=headers).get_json()["csrfToken"]
    data = {"username": "alice", "password": "wrong password", "csrf_token": token}
    assert client.post("/login", data=data, headers=headers).status_code == 401
    with behind_a_proxy.app_context():
        assert get_db().query(SignInEvent).one().ip == "2001:db8::1"


def test_413_names_the_configured_limit(app_config):
    app = create_app({**app_config, "MAX_CONTENT_LENGTH": 2048})
    message = "The request is too large (the limit is 2 KiB)."
    client = app.test_client()
    big = {"csrf_token": csrf_token(client), "username": "x" * 3000}
    page = client.post("/login", data=big)
    assert page.status_code == 413
    assert message in page.get_data(as_text=True)
    json = client.post("/login", data=big, headers={"Accept": "application/json"})
    assert (json.status_code, json.get_json()) == (413, {"error": message})


def test_chunked_form_over_the_limit_is_413_not_cut_short(app):
    """Without Content-Length (a chunked body: gunicorn sets wsgi.input_terminated), werkzeug
    read the first MAX_CONTENT_LENGTH bytes and parsed the form from them, silently."""
    import io

    client = app.test_client()
    token = csrf_token(client)

    def chunked(body: bytes) -> TestResponse:
        environ = {"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True}
        return client.post(
            "/login",
            content_type="application/x-www-form-urlencoded",
            environ_overrides=environ,
            headers={"Transfer-Encoding": "chunked"},
        )

    def body(size: int) -> bytes:
        start = f"csrf_token={token}&username=alice&password=not+the+password&x=".encode()
        return start + b"p" * (size - len(start))

    over = chunked(body(MAX_CONTENT_LENGTH + 10))
    assert over.status_code == 413
    assert TOO_LARGE in over.get_data(as_text=True)
    within = chunked(body(2000))  # parsed as usual: a wrong password
    assert within.status_code == 401, within.get_data(as_text=True)


def test_a_form_body_that_is_not_utf8_is_a_400_that_says_so(app, user):
    """werkzeug drops the whole form when one byte is not UTF-8: the answer was "the CSRF
    token is missing", which sends a script's author the wrong way. The same bytes
    percent-encoded are a form as usual."""
    client = app.test_client()
    token = csrf_token(client)
    start = f"csrf_token={token}&username=alice&password=".encode()
    sent = client.post("/login", data=start + b"caf\xe9 au lait 1", content_type=URLENCODED_TYPE)
    assert sent.status_code == 400
    assert "The form data is not valid UTF-8" in sent.get_data(as_text=True)
    assert "CSRF" not in sent.get_data(as_text=True)
    encoded = client.post("/login", data=start + b"caf%E9+au+lait+1", content_type=URLENCODED_TYPE)
    assert encoded.status_code == 401, encoded.get_data(as_text=True)[-300:]
    assert "Invalid username or password" in encoded.get_data(as_text=True)


def test_default_limit_is_1_mib_with_a_clear_413(app):
    client = app.test_client()
    token = csrf_token(client)
    answer = client.post("/login", data={"csrf_token": token, "x": "y" * MAX_CONTENT_LENGTH})
    assert answer.status_code == 413
    assert TOO_LARGE in answer.get_data(as_text=True)


@pytest.mark.parametrize("encoding", ["multipart/form-data", "application/x-www-form-urlencoded"])
def test_a_form_under_the_limit_is_read_however_it_is_encoded(app, encoding):
    """werkzeug's own limit for one multipart field (500 KB) refused a 600 KB field of a
    request well under the 1 MiB the 413 names."""
    client = app.test_client()
    data = {"csrf_token": csrf_token(client), "username": "alice", "password": "not the password"}
    data["note"] = "y" * 600_000
    if encoding == "multipart/form-data":  # encoded here: the test client would spool a
        boundary, body = encode_multipart(data)  # body this big to a file it never closes
        encoding += f"; boundary={boundary}"
    else:
        body = urlencode(data).encode()
    answer = client.post("/login", data=body, content_type=encoding)
    assert answer.status_code == 401, answer.get_data(as_text=True)[-300:]
    assert "Invalid username or password" in answer.get_data(as_text=True)


def test_a_multipart_form_with_too_many_fields_is_a_413_that_says_so(app):
    """werkzeug's limit on multipart parts (MAX_FORM_PARTS, 1,000); 1,100 because its count
    can fall a part short depending on where the body's chunks end."""
    client = app.test_client()
    data = {"csrf_token": csrf_token(client), **{f"f{n}": "" for n in range(1100)}}
    answer = client.post("/login", data=data, content_type="multipart/form-data")
    assert answer.status_code == 413
    assert "The form has too many fields (the limit is 1,000)." in answer.get_data(as_text=True)


def test_size_text():
    from webapp.errors import size_text

    assert size_text(1024 * 1024) == "1 MiB"
    assert size_text(3 * 1024 * 1024) == "3 MiB"
    assert size_text(2048) == "2 KiB"
    assert size_text(1000) == "1000 bytes"
    assert size_text(1024 * 1024 + 1) == "1048577 bytes"


@pytest.fixture
def hashes(monkeypatch):
    """Argon2 work done: over-long input must be refused before it costs a hash."""
    from webapp.passwords import Passwords

    calls: list[str] = []
    for name in ("verify", "hash"):
        original = getattr(Passwords, name)

        def counted(self, *args, _original=original, _name=name):
            calls.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(Passwords, name, counted)
    return calls


def test_sign_in_refuses_impossible_values_with_a_message_before_hashing(app, user, hashes):
    """A NUL in the username reached PostgreSQL through the throttle (503); an over-long
    password cost an Argon2 hash."""
    from webapp.models import SignInEvent

    for fields, message in [
        ({"username": "a" * 255}, "Username must be at most 254 characters."),  # or email
        ({"username": "a\x00b"}, "Username must not contain control characters."),
        ({"username": "ali\nce"}, "Username must not contain control characters."),
        ({"password": "p" * 129}, "Password must be at most 128 characters."),
        ({"password": "p" * 100_000}, "Password must be at most 128 characters."),
    ]:
        client = app.test_client()
        data = {"username": "alice", "password": PASSWORD, "csrf_token": csrf_token(client)}
        answer = client.post("/login", data={**data, **fields})
        assert answer.status_code == 400, fields
        assert message in answer.get_data(as_text=True)
    assert hashes == []
    with app.app_context():
        assert get_db().query(SignInEvent).count() == 0  # nothing to count, nothing stored
    client = app.test_client()
    longest = {"username": "alice", "password": "p" * 128, "csrf_token": csrf_token(client)}
    assert client.post("/login", data=longest).status_code == 401  # still checked
    assert hashes == ["verify"]


def test_sign_up_refuses_unstorable_values_with_a_message(app):
    """An email with a NUL reached PostgreSQL (503); one with another control character was
    stored."""
    for fields, message in [
        ({"email": "b\x00@example.com"}, "Email must not contain control characters."),
        ({"email": "b\x01@example.com"}, "Email must not contain control characters."),
        ({"confirm": "p" * 129}, "Password must be at most 128 characters."),
        ({"name": "B" * 101}, "Name must be at most 100 printable characters."),
    ]:
        client = app.test_client()
        data = {
            "username": "bob",
            "name": "Bob",
            "email": "bob@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
            "csrf_token": csrf_token(client),
        }
        answer = client.post("/signup", data={**data, **fields})
        assert answer.status_code == 400, fields
        assert message in answer.get_data(as_text=True)
        with app.app_context():
            assert find_user(get_db(), "bob") is None


def test_account_forms_refuse_unstorable_values_before_hashing(app, user, hashes):
    client = app.test_client()
    AuthActions(client).login()
    del hashes[:]
    profile = client.post(
        "/account/profile",
        data={"name": "Al", "email": "a\x00@example.com", "csrf_token": csrf_token(client)},
    )
    assert profile.status_code == 400
    assert "Email must not contain control characters." in profile.get_data(as_text=True)
    with app.app_context():
        assert find_user(get_db(), "alice").email == "alice@example.com"
    for path, fields in [
        ("/account/reauthenticate", {"password": "p" * 129}),
        ("/account/sessions/revoke-others", {"password": "p" * 129}),
        ("/account/password", {"current_password": "p" * 129, "new_password": PASSWORD}),
    ]:
        answer = client.post(path, data={"csrf_token": csrf_token(client), **fields})
        assert answer.status_code == 400, path
        assert "Password must be at most 128 characters." in answer.get_data(as_text=True)
    assert hashes == []


def test_revoking_a_reference_that_cannot_exist_is_404_without_a_lookup(app, user):
    """References are 16 hex digits: anything else is refused before the database (where a
    NUL character in one was a 503 on PostgreSQL)."""
    from sqlalchemy import event

    from webapp.db import engine_of

    client = app.test_client()
    AuthActions(client).login()
    lookups: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM user_sessions" in statement and "user_sessions.id =" in statement:
            lookups.append(statement)

    event.listen(engine_of(app), "before_cursor_execute", count)
    try:
        for ref in ("x" * 100, "ABCDEF0123456789", "0123456789abcde", "0123456789abcdef0", "😀"):
            answer = client.post(
                f"/account/sessions/{quote(ref)}/revoke",
                data={"csrf_token": csrf_token(client), "password": PASSWORD},
            )
            assert answer.status_code == 404, ref
            assert "There is no page at this address." in answer.get_data(as_text=True)
        assert lookups == []
        well_formed = client.post(
            "/account/sessions/0123456789abcdef/revoke",
            data={"csrf_token": csrf_token(client), "password": PASSWORD},
        )
        assert well_formed.status_code == 404
        assert len(lookups) == 1  # the check above can see a lookup
    finally:
        event.remove(engine_of(app), "before_cursor_execute", count)
    assert client.get("/session").get_json()  # still signed in


# the command line ------------------------------------------------------------------------------


def test_cli_refuses_values_it_cannot_use_with_a_message(app, runner):
    """Bytes that are not UTF-8 (the shell passes them on as surrogates) reached the database
    and were a traceback; over-long values are refused before any lookup."""
    for args, message in [
        (["users", "create", "a" * 65], "'USERNAME': must be at most 64 characters"),
        (["users", "create", "b\udcff"], "'USERNAME': is not valid UTF-8"),
        (["users", "create", "bob", "--name", "n" * 101], "'--name': must be at most 100"),
        (["users", "create", "bob", "--name", "B\udcff"], "'--name': is not valid UTF-8"),
        (["users", "create", "bob", "--name", "B\x01"], "'--name': must not contain control"),
        (["users", "create", "bob", "--email", "e" * 255], "'--email': must be at most 254"),
        (["users", "create", "bob", "--email", "b\x01@x.io"], "'--email': must not contain"),
        (["users", "create", "bob", "--email", "b\udcff@x.io"], "'--email': is not valid UTF-8"),
        (["users", "delete", "a" * 65], "'USERNAME': must be at most 64 characters"),
        (["users", "delete", "b\udcff"], "'USERNAME': is not valid UTF-8"),
        (["users", "set-password", "b\udcff"], "'USERNAME': is not valid UTF-8"),
        (["sessions", "list", "--user", "b\udcff"], "'--user': is not valid UTF-8"),
        (["sessions", "revoke", "b\udcff"], "'[REF]': is not valid UTF-8"),
        (["sessions", "revoke", "x" * 17], "'[REF]': must be at most 16 characters"),
        (["sessions", "revoke", "--user", "a" * 65], "'--user': must be at most 64"),
    ]:
        stdin = ["--password-stdin"] if args[1] in ("create", "set-password") else []
        result = runner.invoke(args=[*args, *stdin], input=PASSWORD)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, args
        assert result.exception is None or isinstance(result.exception, SystemExit)
    with app.app_context():
        assert find_user(get_db(), "bob") is None


def test_cli_refuses_a_password_it_cannot_use_with_a_message(app, runner, user):
    for stdin, message in [
        (b"abc\xff\xfeabcdefghijklmnop\n", "the password on standard input is not valid UTF-8"),
        (b"p" * 3_000_000, "Password must be at most 128 characters."),
        ("😀" * 129 + "\n", "Password must be at most 128 characters."),
    ]:
        for username, command in (("bob", "create"), ("alice", "set-password")):
            args = ["users", command, username, "--password-stdin"]
            result = runner.invoke(args=args, input=stdin)
            assert result.exit_code == 1, (command, result.output)
            assert message in result.output
    with app.app_context():
        assert find_user(get_db(), "bob") is None
        assert users.authenticate(get_db(), "alice", PASSWORD) is not None
    password = "😀" * 128  # the longest password, 512 bytes of UTF-8
    args = ["users", "create", "bob", "--password-stdin"]
    assert runner.invoke(args=args, input=password + "\n").exit_code == 0
    with app.app_context():
        assert users.authenticate(get_db(), "bob", password) is not None
