"""The session rules in one place: start with a new id, expire on idle or absolute timeouts,
record activity with throttled writes, end on the server, and never write on a read-only poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import current_app, g, request, session
from flask_login import login_user, logout_user
from flask_wtf.csrf import generate_csrf

from . import clock, remember
from .models import User
from .session_store import session_interface

logger = logging.getLogger(__name__)

#: Keys webapp keeps in the session besides Flask-Login's `_user_id` and `_fresh`.
SIGNED_IN_AT = "_signed_in_at"
LAST_ACTIVE = "_last_active"

View = TypeVar("View", bound=Callable[..., Any])


def read_only(view: View) -> View:
    """Mark a view as read-only: its requests never write the session store or set a cookie,
    never extend the session, and never sign anyone in from a remember-me cookie."""
    view.read_only_session = True  # type: ignore[attr-defined]
    return view


def _is_read_only_request() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "read_only_session", False))


def start(user: User, *, remember_me: bool = False, fresh: bool = True) -> None:
    """Sign `user` in on a brand-new session id with a new CSRF token.

    The order matters: Flask-Session's regenerate() does nothing on an empty session.
    """
    session.clear()
    g.pop("csrf_token", None)
    login_user(user, fresh=fresh)
    now = clock.now()
    session[SIGNED_IN_AT] = now
    session[LAST_ACTIVE] = now
    session_interface(current_app).regenerate(session)
    generate_csrf()
    if remember_me:
        remember.issue(user)


def end() -> None:
    """Sign out: delete the stored session, its cookie and this device's remember-me token."""
    remember.revoke_current()
    logout_user()
    session.clear()


def expires_at(data: Any = session) -> float | None:
    """When a signed-in session ends if nothing else happens: the earlier of its idle and
    absolute ends. None when it is not signed in or lacks its timestamps."""
    try:
        signed_in = float(data[SIGNED_IN_AT])
        last_active = float(data[LAST_ACTIVE])
    except (KeyError, TypeError, ValueError):
        return None
    config = current_app.config
    return min(signed_in + config["ABSOLUTE_TIMEOUT"], last_active + config["IDLE_TIMEOUT"])


def enforce() -> None:
    """before_request: end expired sessions, record activity, restore remembered users."""
    if request.endpoint == "static":
        return
    read_only = _is_read_only_request()
    g.read_only_session = read_only
    if "_user_id" not in session:
        if not read_only and (user := remember.redeem()) is not None:
            start(user, fresh=False)
            logger.info("session restored from remember-me token for user %s", user.id)
        return
    now = clock.now()
    ends = expires_at(session)
    if ends is None or now >= ends:
        logger.info("session expired for user %s", session.get("_user_id"))
        session_interface(current_app).delete_entry(session)
        logout_user()
        session.clear()
        return
    if not read_only and now - float(session[LAST_ACTIVE]) >= current_app.config["TOUCH_INTERVAL"]:
        session[LAST_ACTIVE] = now


def init_app(app: Any) -> None:
    # Flask-Session gives every stored entry this TTL: a backstop for the idle timeout.
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=app.config["IDLE_TIMEOUT"])
    app.before_request(enforce)
    app.after_request(remember.apply_cookie)
