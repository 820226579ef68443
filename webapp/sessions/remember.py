"""Remember me: a random token per device, stored only as a hash, rotated on every use, bound
to the sessions it signs in, and watched for theft.

Replaces Flask-Login's remember cookie (user id + HMAC, a year long, impossible to revoke).
The cookie holds `selector.secret`; the table holds the selector and SHA-256 of the secret.

Each use replaces the token with a new one of the same chain (`series`); the sessions a chain
signs in carry its series (UserSession.remember_series), and ending any of them ends the chain
(index.revoke, index.remove). The replaced token is kept, marked: presented again, it is an
old copy of the cookie, so someone else has it. Then the whole chain ends (its sessions and
tokens) and the user is told at their next sign-in. A browser's parallel requests (two tabs
reopening, a page and its fragment) all send the token that the first of them replaces: the
token replaced last is accepted for REUSE_GRACE seconds, without a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import Response, current_app, flash, g, has_request_context, request
from sqlalchemy import delete, func, select, update

from .. import clock, events
from ..db import get_db
from ..models import RememberToken, User, UserSession
from . import index as session_index

#: Seconds during which the token replaced last still signs in (the same browser's parallel
#: requests); presented later, it is treated as stolen.
REUSE_GRACE = 5
#: Replaced tokens kept per chain to recognise old copies (older ones are forgotten, as are
#: those past their own expiry): bounds the table whatever the number of uses.
KEPT_PER_CHAIN = 20
REUSE_NOTICE = (
    "Someone used an old copy of a “Remember me” sign-in of yours, so that device has been "
    "signed out everywhere it was in use. If you did not expect this, change your password "
    "and check your sessions."
)


@dataclass(frozen=True)
class Restored:
    """What a remember cookie signs in: the user, and the chain the new session belongs to."""

    user: User
    series: str


def cookie_name() -> str:
    return "__Host-remember" if current_app.config["SECURE_COOKIES"] else "remember"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


#: What issue() makes: token_urlsafe(12) and token_urlsafe(32).
SELECTOR_PATTERN = re.compile(r"[A-Za-z0-9_-]{16}")
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def _cookie_token() -> RememberToken | None:
    """The stored token the request's cookie names, if the cookie is well formed."""
    selector, _, secret = request.cookies.get(cookie_name(), "").partition(".")
    if not (SELECTOR_PATTERN.fullmatch(selector) and SECRET_PATTERN.fullmatch(secret)):
        return None  # never sent to the database (a NUL byte would be a PostgreSQL error)
    token = get_db().get(RememberToken, selector)
    if token is None or not hmac.compare_digest(token.secret_hash, _digest(secret)):
        return None
    return token


def _add_token(user_id: int, series: str | None = None) -> str:
    """Store a new token (of `series`, or starting a chain); the response sets its cookie.
    Returns its series. The caller commits."""
    selector, secret = secrets.token_urlsafe(12), secrets.token_urlsafe(32)
    now = clock.utcnow()
    get_db().add(
        RememberToken(
            selector=selector,
            secret_hash=_digest(secret),
            user_id=user_id,
            created_at=now,
            expires_at=now + timedelta(seconds=current_app.config["REMEMBER_DURATION"]),
            series=series or selector,
        )
    )
    g.remember_cookie = f"{selector}.{secret}"
    return series or selector


def issue(user: User) -> str:
    """Start a new chain for `user` (sign-in with "remember me"); returns its series, which
    the new session must carry."""
    series = _add_token(user.id)
    get_db().commit()
    return series


def redeem() -> Restored | None:
    """What a valid remember cookie signs in; its token is replaced by a new one. A replaced
    token presented again is theft (the chain ends), except within the grace period."""
    if cookie_name() not in request.cookies:
        return None
    token = _cookie_token()
    if token is not None and token.replaced_at is None:
        restored = _replace(token)
        if restored is not None:
            return restored
        # Gone (expired), or replaced meanwhile by a parallel request: read it again.
        token = get_db().get(RememberToken, token.selector, populate_existing=True)
    if token is not None and token.replaced_at is not None:
        if _is_parallel_request(token):  # no new token: the first request's cookie stands
            return Restored(get_db().get_one(User, token.user_id), token.series)
        _end_stolen_chain(token)
    g.remember_cookie = ""  # unknown, expired, forged or stolen: forget it
    return None


def _replace(token: RememberToken) -> Restored | None:
    """Replace a live token by the next of its chain; None when it expired (the chain ends) or
    a parallel request replaced it first."""
    db = get_db()
    now = clock.utcnow()
    if clock.as_utc(token.expires_at) <= now:
        db.execute(delete(RememberToken).where(RememberToken.series == token.series))
        db.commit()
        return None
    claimed = db.execute(
        update(RememberToken)
        .where(RememberToken.selector == token.selector, RememberToken.replaced_at.is_(None))
        .values(replaced_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        db.commit()
        return None
    _add_token(token.user_id, token.series)
    _forget_old_copies(token.series)
    db.commit()
    return Restored(db.get_one(User, token.user_id), token.series)


def _forget_old_copies(series: str) -> None:
    """Delete the chain's replaced tokens that are past their expiry or beyond the newest
    KEPT_PER_CHAIN."""
    db = get_db()
    replaced = (RememberToken.series == series, RememberToken.replaced_at.is_not(None))
    surplus = (
        select(RememberToken.selector)
        .where(*replaced)
        .order_by(RememberToken.replaced_at.desc())
        .offset(KEPT_PER_CHAIN)
    )
    old = list(db.scalars(surplus))
    expired = RememberToken.expires_at <= clock.utcnow()
    # Not evaluated against loaded tokens in Python (SQLite's times come back without a zone).
    db.execute(
        delete(RememberToken).where(*replaced, expired | RememberToken.selector.in_(old)),
        execution_options={"synchronize_session": False},
    )


def _is_parallel_request(token: RememberToken) -> bool:
    """Whether a replaced token comes from the same browser's request that raced the one
    that replaced it: replaced last in its chain, within REUSE_GRACE seconds."""
    if token.replaced_at is None:
        return False
    replaced_at = clock.as_utc(token.replaced_at)
    if clock.utcnow() - replaced_at >= timedelta(seconds=REUSE_GRACE):
        return False
    latest = get_db().scalar(
        select(func.max(RememberToken.replaced_at)).where(RememberToken.series == token.series)
    )
    return latest is not None and clock.as_utc(latest) <= replaced_at


def _end_stolen_chain(token: RememberToken) -> None:
    """An old copy of the cookie came back: whoever holds the chain's current token may be the
    thief. End every session of the chain and its tokens, and keep a note to tell the user."""
    db = get_db()
    series, user_id = token.series, token.user_id
    sessions = list(db.scalars(select(UserSession).where(UserSession.remember_series == series)))
    ended = session_index.revoke(sessions)
    db.execute(delete(RememberToken).where(RememberToken.series == series))
    db.execute(update(User).where(User.id == user_id).values(remember_reused_at=clock.utcnow()))
    db.commit()
    events.record("remember_token_reused", user_id=user_id, sessions_ended=ended)


def tell_about_reuse(user: User) -> None:
    """At sign-in: say so once if an old copy of one of the user's tokens was presented."""
    if user.remember_reused_at is None:
        return
    flash(REUSE_NOTICE)
    user.remember_reused_at = None
    get_db().commit()


def revoke_current() -> None:
    """Sign-out: end the chain this request's cookie names, and delete the cookie."""
    token = _cookie_token()
    if token is not None:
        db = get_db()
        db.execute(delete(RememberToken).where(RememberToken.series == token.series))
        db.commit()
    if cookie_name() in request.cookies:
        g.remember_cookie = ""


def current_selector() -> str | None:
    """The live (not replaced) token this request's cookie names, if any."""
    token = _cookie_token() if has_request_context() else None
    return token.selector if token is not None and token.replaced_at is None else None


def revoke_all(user: User, *, keep: str | None = None) -> None:
    """Delete the user's tokens, except the token `keep` (with the replaced ones of its chain,
    still needed to recognise old copies)."""
    query = delete(RememberToken).where(RememberToken.user_id == user.id)
    db = get_db()
    if keep is not None and (kept := db.get(RememberToken, keep)) is not None:
        this_chain_history = (RememberToken.series == kept.series) & (
            RememberToken.replaced_at.is_not(None)
        )
        query = query.where(RememberToken.selector != keep, ~this_chain_history)
    db.execute(query)
    db.commit()


def remembered_series(user_id: int) -> set[str]:
    """The user's chains that can still sign a device in (for the sessions page)."""
    query = select(RememberToken.series).where(
        RememberToken.user_id == user_id,
        RememberToken.replaced_at.is_(None),
        RememberToken.expires_at > clock.utcnow(),
    )
    return set(get_db().scalars(query))


def prune_expired(limit: int | None = None, batch: int = 500) -> int:
    """Delete tokens past their expiry, in batches; how many went. An expired token signs no
    one in, and its cookie has expired in the browser too (same lifetime)."""
    db = get_db()
    deleted = 0
    while limit is None or deleted < limit:
        size = batch if limit is None else min(batch, limit - deleted)
        expired = select(RememberToken.selector).where(RememberToken.expires_at <= clock.utcnow())
        selectors = list(db.scalars(expired.limit(size)))
        if not selectors:
            break
        db.execute(delete(RememberToken).where(RememberToken.selector.in_(selectors)))
        db.commit()
        deleted += len(selectors)
    return deleted


def apply_cookie(response: Response) -> Response:
    """after_request: set or delete the remember cookie as this request decided."""
    value = g.pop("remember_cookie", None)
    if value is None:
        return response
    secure = current_app.config["SECURE_COOKIES"]
    if value:
        response.set_cookie(
            cookie_name(),
            value,
            max_age=current_app.config["REMEMBER_DURATION"],
            path="/",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
    else:
        response.delete_cookie(
            cookie_name(), path="/", secure=secure, httponly=True, samesite="Lax"
        )
    return response
