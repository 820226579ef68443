"""What the session widget and /session show: the one place that turns session data into it.

It works on the stored session's data alone, so that the same code serves Flask's request
cycle (views.py) and the poll fast path (fast_path.py). The widget's state is what a person
sees (signed in or not, who, the expiry warning); its token is a hash of that state. A client
that already shows a token gets 204 while the state is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask

from ..sessions import policy as session_policy

LOADING = "loading"
AUTHENTICATED = "authenticated"
UNAUTHENTICATED = "unauthenticated"
#: The widget warns this many seconds before a session ends.
WARNING_SECONDS = 120
TEMPLATE = "partials/session_widget.html"

# The poll protocol's headers.
#: The widget sends the state token it shows; the same token back means "nothing changed".
STATE_HEADER = "X-Session-State"
#: Sent by the widget on pages that need a signed-in user (useSession({required: true})).
REQUIRED_HEADER = "X-Session-Required"
#: What a /session answer varies by.
VARY = ("Cookie", "HX-Request", "Accept", STATE_HEADER, REQUIRED_HEADER)


def iso_utc(timestamp: float) -> str:
    """next-auth's `expires` format (JavaScript's toISOString): UTC to the millisecond,
    rounded down, so that the session is still alive at the instant it names."""
    seconds, milliseconds = divmod(math.floor(timestamp * 1000), 1000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{milliseconds:03d}Z"


def utc_text(
    moment: float | str | datetime, fmt: str = "%Y-%m-%d %H:%M", *, label: bool = True
) -> str:
    """What a page shows for a time before session.js makes it relative and local (and
    without JavaScript): labelled UTC. Takes a timestamp, an ISO string or a datetime (naive
    ones, as the database returns them, are UTC)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    elif not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = f"{moment.astimezone(UTC):{fmt}}"
    return f"{text} UTC" if label else text


def visible_state(
    data: Mapping[str, Any], user: dict[str, Any] | None, now: float, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything the widget shows, and nothing it does not (so `expires` moving on its own
    does not change the state: only the warning appearing or moving does). The basket's
    count is part of it, so that every open tab's header follows the basket."""
    basket = sum(session_policy.basket_lines(data).values())
    shown = {"basket": basket} if basket else {}  # no basket: the state (and token) as before
    expires = session_policy.expires_at(data, config) if user else None
    if user is None or expires is None:
        return {"status": UNAUTHENTICATED, **shown}
    warn = expires - now <= WARNING_SECONDS
    return {
        **shown,
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
    """next-auth's /api/auth/session shape: {} when signed out; plus how the session began."""
    expires = session_policy.expires_at(data, config) if user else None
    if user is None or expires is None:
        return {}
    found = {"user": user, "expires": iso_utc(expires)}
    if isinstance(method := data.get(session_policy.METHOD), str):
        found["method"] = method
    return found


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
