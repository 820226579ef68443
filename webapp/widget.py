"""What the session widget and /session show: the one place that turns session data into it.

The core works on the stored session's data alone, so that the same code serves Flask's
request cycle and the poll fast path (poll_fast_path.py). The widget's state is what a person
sees (signed in or not, who, the expiry warning); its token is a hash of that state. A client
that already shows a token gets 204 while the state is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, render_template, request, session, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

from . import clock, session_policy
from .htmx import is_boosted

LOADING = "loading"
AUTHENTICATED = "authenticated"
UNAUTHENTICATED = "unauthenticated"
#: The widget warns this many seconds before a session ends.
WARNING_SECONDS = 120
TEMPLATE = "partials/session_widget.html"


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# the core: session data in, state / JSON / HTML out ------------------------------------------


def visible_state(
    data: Mapping[str, Any], user: dict[str, Any] | None, now: float, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything the widget shows, and nothing it does not (so `expires` moving on its own
    does not change the state: only the warning appearing or moving does)."""
    expires = session_policy.expires_at(data, config) if user else None
    if user is None or expires is None:
        return {"status": UNAUTHENTICATED}
    warn = expires - now <= WARNING_SECONDS
    return {
        "status": AUTHENTICATED,
        "user": user,
        # The sign-out button carries the CSRF token: a rotated token must reach the widget.
        "csrf": hashlib.sha256(str(data.get("csrf_token")).encode()).hexdigest()[:16],
        "warning_until": int(expires) if warn else None,
        "can_extend": warn and session_policy.idle_end_comes_first(data, config),
    }


def state_token(state: Mapping[str, Any]) -> str:
    encoded = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:20]


def session_json(
    data: Mapping[str, Any], user: dict[str, Any] | None, config: Mapping[str, Any]
) -> dict[str, Any]:
    """next-auth's /api/auth/session shape: {} when signed out."""
    expires = session_policy.expires_at(data, config) if user else None
    if user is None or expires is None:
        return {}
    return {"user": user, "expires": iso_utc(expires)}


def widget_html(
    app: Flask,
    state: Mapping[str, Any],
    *,
    status: str | None,
    expires_in: int | None,
    csrf: str,
    page: str,
) -> str:
    """The widget's HTML. Needs no request: everything comes in as arguments."""
    return app.jinja_env.get_template(TEMPLATE).render(
        status=status or state["status"],
        state=state,
        token=state_token(state),
        expires_in=expires_in,
        csrf=csrf,
        page=page,
        poll_seconds=app.config["POLL_SECONDS"],
        urls=app.extensions["webapp.widget_urls"],
    )


# Flask's side: the current request's session ------------------------------------------------


def current_user_data() -> dict[str, Any] | None:
    """The signed-in user as /session shows it: from the session's cache while it is younger
    than the touch interval, else from the database (one query)."""
    if "_user_id" not in session:
        return None
    cached = session_policy.cached_user(session, clock.now(), current_app.config)
    if cached is not None:
        return cached
    return current_user.as_session_user() if current_user.is_authenticated else None


def current_state() -> dict[str, Any]:
    return visible_state(session, current_user_data(), clock.now(), current_app.config)


def current_json() -> dict[str, Any]:
    return session_json(session, current_user_data(), current_app.config)


def render(status: str | None = None, state: Mapping[str, Any] | None = None) -> str:
    """The widget for the current session. `status` overrides the status shown: "loading"
    for a public page's first render."""
    state = state or current_state()
    expires = session_policy.expires_at() if state["status"] == AUTHENTICATED else None
    return widget_html(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        state,
        status=status,
        expires_in=int(expires - clock.now()) if expires is not None else None,
        # Signed-in sessions got their token at sign-in: this never writes on a poll.
        csrf=generate_csrf() if state["status"] == AUTHENTICATED else "",
        page=request.path,
    )


def render_for_page(status: str | None = None) -> Markup:
    """The widget as a page shows it: the status the page knows (protected pages), the known
    state on htmx-boosted navigation (the widget stays alive), else "loading"."""
    if status is None and not is_boosted():
        status = LOADING
    return Markup(render(status))  # noqa: S704 (HTML rendered by Jinja with autoescape)


def render_protected_page(template: str, **context: Any) -> str:
    """A page that needs a signed-in user: it shows the known state at once and, if the session
    ends while it is open, the widget sends the person to sign in (useSession's `required`)."""
    return render_template(template, widget_status=AUTHENTICATED, **context)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["session_widget"] = render_for_page
    app.jinja_env.filters["iso_utc"] = iso_utc
    with app.test_request_context():
        app.extensions["webapp.widget_urls"] = {
            name: url_for(endpoint)
            for name, endpoint in (
                ("session", "session_api.session_state"),
                ("keepalive", "session_api.keepalive"),
                ("csrf", "session_api.csrf_token"),
                ("login", "auth.login"),
                ("logout", "auth.logout"),
            )
        }
