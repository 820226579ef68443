"""GET /session answered before Flask's request cycle, when the stored session is all it needs.

Every open tab polls /session, so the poll is the product's hot path; Flask's request cycle
(context, hooks, extensions, response object) costs about as much as the poll's real work. This
WSGI layer answers the common cases from the stored session alone, with the same functions the
Flask route uses (state.py, sessions/policy.py): anonymous callers and signed-in sessions (with
one query by primary key when the user cached in the session is older than the touch
interval). Anything else (no stored entry, expiry, a deleted user, a failing database, a
required page that lost its session) goes to the Flask route, which is the reference and logs
what it finds. It never raises either: whatever it cannot handle (a bug, an input nobody
thought of) goes to the route too, which has the error pages and the security headers.
Like the route, it never writes: no store write, no cookie, no database.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.sansio.http import parse_cookie

from ..errors import STORE_OUTAGES
from ..models import User
from ..sessions import policy as session_policy
from ..sessions.store import session_interface
from ..web.request_guard import host_trusted
from ..web.security_headers import HEADERS
from . import state as widget

logger = logging.getLogger(__name__)

PATH = "/session"
#: The poll protocol's headers as WSGI names them.
STATE_ENVIRON = "HTTP_" + widget.STATE_HEADER.upper().replace("-", "_")
REQUIRED_ENVIRON = "HTTP_" + widget.REQUIRED_HEADER.upper().replace("-", "_")
#: Entries in each per-process cache before it starts afresh.
CACHE_SIZE = 4096
#: Stands for data-expires-in in a cached widget (the one thing in it that a poll changes).
EXPIRES_IN_MARK = -424242
StartResponse = Callable[..., Any]
Answer = tuple[str, list[tuple[str, str]], bytes]


class PollFastPath:
    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.config = app.config
        self.interface = session_interface(app)
        # Flask-WTF's own token format, so the widget's sign-out form posts as from the route.
        secret = app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key or ""
        self.csrf_signer = URLSafeTimedSerializer(secret, salt="wtf-csrf-token")
        # Per process, both bounded: users by id as loaded from the database (valid for the
        # touch interval, like the session's own cache), widget HTML by state token.
        self.users: dict[int, tuple[float, dict[str, Any]]] = {}
        self.fragments: dict[str, str] = {}
        self.common_headers = [
            ("Cache-Control", "private, no-store"),
            ("Vary", ", ".join(widget.VARY)),
            *HEADERS.items(),
        ]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "GET":
            answer = self.guarded_answer(environ)
            if answer is not None:
                status, headers, body = answer
                start_response(status, headers)
                return [body]
        return self.wsgi_app(environ, start_response)

    def guarded_answer(self, environ: dict[str, Any]) -> Answer | None:
        """answer(), or None (the route answers) when it raises: a poll is never a bare 500."""
        try:
            return self.answer(environ)
        except Exception:
            logger.warning("poll fast path failed; the Flask route answers", exc_info=True)
            return None

    def answer(self, environ: dict[str, Any]) -> Answer | None:
        """The response, or None when the Flask route must answer."""
        if not host_trusted(environ, self.config["TRUSTED_HOSTS"]):
            return None  # the route refuses it, with a 400 that says why
        data: dict[str, Any] = {}
        # Cookies as Flask reads them (the header's characters as WSGI gives them, any byte
        # accepted): werkzeug.http.parse_cookie decodes UTF-8 strictly and raises.
        cookies = parse_cookie(environ.get("HTTP_COOKIE", ""))
        sid = cookies.get(self.config["SESSION_COOKIE_NAME"])
        if sid:
            try:
                stored = self.interface._retrieve_session_data(self.interface._get_store_id(sid))
            except STORE_OUTAGES:
                return None  # the route answers 503 and logs it
            if stored is None:
                return None
            data = stored
        now = (self.config.get("CLOCK") or time.time)()
        user = None
        if "_user_id" in data:
            ends = session_policy.expires_at(data, self.config)
            if ends is None or now >= ends or "csrf_token" not in data:
                return None
            user = session_policy.cached_user(data, now, self.config) or self.load_user(data, now)
            if user is None:
                return None
        if environ.get("HTTP_HX_REQUEST") != "true" or environ.get("HTTP_HX_BOOSTED") == "true":
            body = json.dumps(widget.session_json(data, user, self.config), sort_keys=True)
            return self.ok("application/json", body.encode())
        return self.widget_answer(environ, data, user, now)

    def load_user(self, data: dict[str, Any], now: float) -> dict[str, Any] | None:
        """The user from the database (one query by primary key) or this process's copy of it
        younger than the touch interval: a tab left open longer than that has an old cache
        and no real request to refresh it. None (the route then answers) when the user is
        gone or the database fails."""
        try:
            user_id = int(data["_user_id"])
        except (KeyError, ValueError):
            return None
        loaded = self.users.get(user_id)
        if loaded is not None and 0 <= now - loaded[0] < self.config["TOUCH_INTERVAL"]:
            return loaded[1]
        try:
            with self.app.extensions["webapp.db"]() as db:
                user = db.get(User, user_id)
        except SQLAlchemyError:
            return None
        if user is None:
            return None
        if len(self.users) >= CACHE_SIZE:
            self.users.clear()
        self.users[user_id] = (now, user.as_session_user())
        return self.users[user_id][1]

    def widget_answer(
        self, environ: dict[str, Any], data: dict[str, Any], user: Any, now: float
    ) -> Answer | None:
        state = widget.visible_state(data, user, now, self.config)
        if state["status"] == widget.UNAUTHENTICATED and environ.get(REQUIRED_ENVIRON):
            return None
        token = widget.state_token(state)
        if environ.get(STATE_ENVIRON) == token:
            return "204 NO CONTENT", list(self.common_headers), b""
        ends = session_policy.expires_at(data, self.config) if user else None
        html = self.fragments.get(token)
        if html is None:  # the state token covers the CSRF token and all else shown but this:
            html = widget.widget_html(
                self.app,
                state,
                status=None,
                expires_in=EXPIRES_IN_MARK if user else None,
                csrf=self.csrf_signer.dumps(data["csrf_token"]) if user else "",
                page=PATH,
            )
            if len(self.fragments) >= CACHE_SIZE:
                self.fragments.clear()
            self.fragments[token] = html
        if ends is not None:
            html = html.replace(f'"{EXPIRES_IN_MARK}"', f'"{int(ends - now)}"', 1)
        return self.ok("text/html; charset=utf-8", html.encode())

    def ok(self, content_type: str, body: bytes) -> Answer:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *self.common_headers,
        ]
        return "200 OK", headers, body


def init_app(app: Flask) -> None:
    app.wsgi_app = PollFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
