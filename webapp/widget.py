"""What the session widget and /session show: the one place that reads the session for them.

The widget's state is what a person sees (signed in or not, who, the expiry warning); its token
is a hash of that state. A client that already shows a token gets 204 from /session while the
state is unchanged, so a poll that changes nothing renders nothing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from flask import Flask, render_template, session
from flask_login import current_user
from markupsafe import Markup

from . import clock, session_policy
from .htmx import is_boosted

LOADING = "loading"
AUTHENTICATED = "authenticated"
UNAUTHENTICATED = "unauthenticated"
#: The widget warns this many seconds before a session ends.
WARNING_SECONDS = 120


def known_status() -> str:
    return AUTHENTICATED if current_user.is_authenticated else UNAUTHENTICATED


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_json() -> dict[str, Any]:
    """next-auth's /api/auth/session shape: {} when signed out."""
    if not current_user.is_authenticated:
        return {}
    expires = session_policy.expires_at()
    return {
        "user": current_user.as_session_user(),
        "expires": iso_utc(expires) if expires is not None else None,
    }


def visible_state() -> dict[str, Any]:
    """Everything the widget shows, and nothing it does not (so `expires` moving on its own
    does not change the state: only the warning appearing or moving does)."""
    if not current_user.is_authenticated:
        return {"status": UNAUTHENTICATED}
    expires = session_policy.expires_at() or clock.now()
    warn = expires - clock.now() <= WARNING_SECONDS
    return {
        "status": AUTHENTICATED,
        "user": current_user.as_session_user(),
        # The sign-out button carries the CSRF token: a rotated token must reach the widget.
        "csrf": hashlib.sha256(str(session.get("csrf_token")).encode()).hexdigest()[:16],
        "warning_until": int(expires) if warn else None,
        "can_extend": warn and session_policy.idle_end_comes_first(),
    }


def state_token(state: dict[str, Any]) -> str:
    encoded = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:20]


def render(status: str | None = None, state: dict[str, Any] | None = None) -> str:
    """The widget's HTML for `state` (default: the current one). `status` overrides the shown
    status: "loading" for a public page's first render."""
    state = state or visible_state()
    expires = session_policy.expires_at() if state["status"] == AUTHENTICATED else None
    return render_template(
        "partials/session_widget.html",
        widget_status=status or state["status"],
        widget_state=state,
        widget_token=state_token(state),
        widget_expires_in=int(expires - clock.now()) if expires is not None else None,
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
