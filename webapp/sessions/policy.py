"""The session rules in one place: a new id at every sign-in and privilege change, idle and
absolute timeouts, throttled activity writes, freshness, server-side sign-out and revocation,
and no writes at all on a read-only poll.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from flask import Flask, current_app, g, request, session
from flask_login import current_user, login_user, logout_user
from flask_session.base import ServerSideSession
from flask_wtf.csrf import generate_csrf

from .. import clock, events, notices, throttle
from ..db import get_db
from ..models import User
from . import index as session_index
from . import remember
from .store import current_session, session_interface

logger = logging.getLogger(__name__)

#: Keys webapp keeps in the session besides Flask-Login's `_user_id` and `_fresh`.
SIGNED_IN_AT = "_signed_in_at"  # when this session was signed in (absolute timeout)
LAST_ACTIVE = "_last_active"  # last recorded real request (idle timeout)
AUTHENTICATED_AT = "_authenticated_at"  # last time the password was entered (freshness)
USER_CACHE = "_user"  # the user as /session shows it, so polls need no database query...
USER_CACHED_AT = "_user_cached_at"  # ...while younger than TOUCH_INTERVAL
METHOD = "_method"  # how this session began: "password", "password+totp", "passkey", ...
BASKET = "basket"  # {sku: quantity}: the shopping basket (webapp/basket.py)
RECENT_PAGES = "_recent_pages"  # [[path, time], ...]: what this session was used for lately

#: What a visitor keeps when signing in: the session is cleared and gets a new id, and these
#: keys alone are handed over to it (never anything that grants access).
CARRIED_ACROSS_SIGN_IN = (BASKET,)
#: The store TTL of an anonymous session (one that holds a basket): a day after its last change.
ANONYMOUS_LIFETIME = 24 * 3600
#: Pages kept in RECENT_PAGES, newest last.
RECENT_PAGES_KEPT = 10

View = TypeVar("View", bound=Callable[..., Any])


def read_only(view: View) -> View:
    """Mark a view as read-only: its requests never write the session store or set a cookie,
    never extend the session, and never sign anyone in from a remember-me cookie."""
    view.read_only_session = True  # type: ignore[attr-defined]
    return view


def _is_read_only_request() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "read_only_session", False))


def _new_csrf_token() -> None:
    session.pop("csrf_token", None)
    g.pop("csrf_token", None)
    generate_csrf()


def start(
    user: User,
    *,
    remember_me: bool = False,
    method: str = "password",
    remember_series: str | None = None,
) -> None:
    """Sign `user` in on a brand-new session id with a new CSRF token, and index the session
    with the remember-me chain it belongs to: a new one for `remember_me`, or the chain that
    restored it (`remember_series`).

    The order matters: Flask-Session's regenerate() does nothing on an empty session. A session
    restored from a remember-me token (method "remember") is not fresh.
    """
    fresh = method != "remember"
    carried = {key: session[key] for key in CARRIED_ACROSS_SIGN_IN if key in session}
    session.clear()
    session.update(carried)
    login_user(user, fresh=fresh)
    now = clock.now()
    session[SIGNED_IN_AT] = now
    session[LAST_ACTIVE] = now
    session[METHOD] = method
    cache_user(user)
    if fresh:
        session[AUTHENTICATED_AT] = now
    session_interface(current_app).regenerate(current_session())
    _new_csrf_token()
    if remember_me:
        remember_series = remember.issue(user)
    row = session_index.create(user, current_session().sid, remember_series, method)
    notices.after_sign_in(user, method, row)  # a new account's or a new device's mail
    throttle.record(get_db(), user.username, "success", method, user)
    remember.tell_about_reuse(user)
    events.record("sign_in", user_id=user.id, sid=current_session().sid, method=method)


def rotate() -> None:
    """Give the current session a new id (a privilege change); the old id is dead at once."""
    old_sid = current_session().sid
    session_interface(current_app).regenerate(current_session())
    _new_csrf_token()
    session_index.rotate(old_sid, current_session().sid)


def reauthenticated(user: User) -> None:
    """The user confirmed it is them again (password, passkey or provider): fresh from now, on
    a new session id."""
    session["_fresh"] = True
    session[AUTHENTICATED_AT] = clock.now()
    rotate()
    throttle.record(get_db(), user.username, "success", "reauthenticate", user)
    events.record("reauthenticated", user_id=user.id, sid=current_session().sid)


def is_fresh() -> bool:
    """Whether the password was entered in this session within FRESH_TIMEOUT."""
    entered = session.get(AUTHENTICATED_AT)
    if not session.get("_fresh") or entered is None:
        return False
    return clock.now() - float(entered) < current_app.config["FRESH_TIMEOUT"]


def end(event: str = "sign_out") -> None:
    """Sign out: delete the stored session, its index row, its cookie and this device's
    remember-me chain (the cookie's, and the one the session belongs to)."""
    events.record(event, user_id=current_user_id(), sid=current_session().sid)
    remember.revoke_current()
    # The store entry before its index row: a process killed in between leaves a row that
    # names nothing (pruned later), never a live session that no list shows or can revoke.
    session_interface(current_app).delete_entry(current_session())
    session_index.remove(current_session().sid, forget_device=True)
    logout_user()
    session.clear()


def end_other_sessions(user: User) -> int:
    """End every session of the user but this one, and every remember-me token but this
    device's; the number of sessions ended."""
    keep = remember.current_selector()
    remember.revoke_all(user, keep=keep)
    return session_index.revoke_all(user.id, keep_sid=current_session().sid, keep_token=keep)


def end_all_sessions(user: User) -> int:
    """End every session and remember-me token of the user (CLI: password set, user deleted)."""
    remember.revoke_all(user)
    return session_index.revoke_all(user.id)


def current_user_id() -> int | None:
    """The signed-in user's id as the session holds it, without loading the user."""
    value = session.get("_user_id")
    return int(value) if value is not None and str(value).isdigit() else None


def expires_at(data: Any = session, config: Mapping[str, Any] | None = None) -> float | None:
    """When a signed-in session ends if nothing else happens: the earlier of its idle and
    absolute ends. None when it is not signed in or lacks its timestamps."""
    try:
        signed_in = float(data[SIGNED_IN_AT])
        last_active = float(data[LAST_ACTIVE])
    except (KeyError, TypeError, ValueError):
        return None
    config = config or current_app.config
    return min(signed_in + config["ABSOLUTE_TIMEOUT"], last_active + config["IDLE_TIMEOUT"])


def idle_end_comes_first(data: Any = session, config: Mapping[str, Any] | None = None) -> bool:
    """Whether activity can still push the session's end back (the absolute end is further)."""
    config = config or current_app.config
    try:
        idle_end = float(data[LAST_ACTIVE]) + config["IDLE_TIMEOUT"]
        return idle_end < float(data[SIGNED_IN_AT]) + config["ABSOLUTE_TIMEOUT"]
    except (KeyError, TypeError, ValueError):
        return False


def cached_user(data: Any, now: float, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The user cached in the session, if cached less than TOUCH_INTERVAL ago."""
    user, cached_at = data.get(USER_CACHE), data.get(USER_CACHED_AT)
    if not isinstance(user, dict) or not isinstance(cached_at, int | float):
        return None
    return user if 0 <= now - cached_at < config["TOUCH_INTERVAL"] else None


def cache_user(user: User) -> None:
    """Store the user's details in the session (done whenever the session is written anyway)."""
    session[USER_CACHE] = user.as_session_user()
    session[USER_CACHED_AT] = clock.now()


def extend() -> None:
    """Record activity now, whatever the touch interval ("Stay signed in")."""
    session[LAST_ACTIVE] = clock.now()
    session_index.touch(current_session().sid)


def _expire() -> None:
    """End a timed-out session on first sight; on a read-only request only the store entry
    and index row go (no cookie is touched). Its remember-me chain stays: signing the device
    back in after a timeout is what it is for."""
    events.record("session_expired", user_id=current_user_id(), sid=current_session().sid)
    session_interface(current_app).delete_entry(session)
    session_index.remove(current_session().sid, forget_device=False)
    logout_user()
    session.clear()


def enforce() -> None:
    """before_request: end expired sessions, record activity, restore remembered users."""
    if request.endpoint == "static":
        return
    read_only = _is_read_only_request()
    g.read_only_session = read_only
    if "_user_id" not in session:
        # An old id of a session that just got a new one: the browser is signed in already.
        moved = getattr(current_session(), "moved", False)
        if not read_only and not moved and (restored := remember.redeem()) is not None:
            start(restored.user, method="remember", remember_series=restored.series)
        return
    now = clock.now()
    ends = expires_at(session)
    if ends is None or now >= ends:
        _expire()
        return
    if read_only:
        return
    _note_page(now)
    if now - float(session[LAST_ACTIVE]) >= current_app.config["TOUCH_INTERVAL"]:
        session[LAST_ACTIVE] = now
        session_index.touch(current_session().sid)
        if current_user.is_authenticated:
            cache_user(current_user)


def _note_page(now: float) -> None:
    """Add this request's page to the session's recent pages without marking the session
    modified: the list is stored whenever the session is written anyway (the activity touch,
    at most once per TOUCH_INTERVAL, or a request that changes the session), never by itself.
    Paths only: a query string may hold a secret."""
    if request.method != "GET":
        return
    pages = session.get(RECENT_PAGES)
    if not isinstance(pages, list):
        pages = []
        dict.__setitem__(current_session(), RECENT_PAGES, pages)  # not a modification
    pages.append([request.path, now])
    del pages[:-RECENT_PAGES_KEPT]


def basket_lines(data: Any = session) -> dict[str, int]:
    """The basket a session holds, {sku: quantity}; anything malformed counts as empty."""
    lines = data.get(BASKET)
    if not isinstance(lines, dict):
        return {}
    return {
        str(sku): quantity
        for sku, quantity in lines.items()
        if isinstance(quantity, int) and not isinstance(quantity, bool) and quantity > 0
    }


def recent_pages() -> list[tuple[str, float]]:
    """The pages this session was used for lately, newest first (as stored: see _note_page)."""
    pages = session.get(RECENT_PAGES)
    if not isinstance(pages, list):
        return []
    return [(str(path), float(at)) for path, at in reversed(pages)]


def _still_indexed(stored: ServerSideSession) -> bool:
    """A signed-in session may be written only while its index row exists: a request that
    was running when its session was revoked must not write it back."""
    return "_user_id" not in stored or session_index.find(stored.sid) is not None


def _remaining_life(stored: ServerSideSession) -> timedelta:
    """The store's TTL for an entry: what is left of a signed-in session (the earlier of its
    idle and absolute ends), rounded up to whole seconds so that the entry lives until the
    `expires` /session advertises; ANONYMOUS_LIFETIME for an anonymous one (a basket)."""
    ends = expires_at(stored)
    if ends is None:
        return timedelta(seconds=ANONYMOUS_LIFETIME)
    return timedelta(seconds=max(1, math.ceil(ends - clock.now())))


def init_app(app: Flask) -> None:
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=app.config["IDLE_TIMEOUT"])
    interface = session_interface(app)
    interface.write_guard = _still_indexed
    interface.lifetime = _remaining_life
    app.before_request(enforce)
    app.jinja_env.globals["recent_pages"] = recent_pages
    app.after_request(remember.apply_cookie)
