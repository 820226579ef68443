"""Remember me: a random token per device, stored only as a hash, rotated on every use.

Replaces Flask-Login's remember cookie (user id + HMAC, a year long, impossible to revoke).
The cookie holds `selector.secret`; the table holds the selector and SHA-256 of the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta

from flask import Response, current_app, g, has_request_context, request
from sqlalchemy import delete

from .. import clock
from ..db import get_db
from ..models import RememberToken, User


def cookie_name() -> str:
    return "__Host-remember" if current_app.config["SECURE_COOKIES"] else "remember"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


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


def issue(user: User) -> None:
    """Store a new token for `user`; the response sets its cookie."""
    selector, secret = secrets.token_urlsafe(12), secrets.token_urlsafe(32)
    db = get_db()
    db.add(
        RememberToken(
            selector=selector,
            secret_hash=_digest(secret),
            user_id=user.id,
            created_at=_now(),
            expires_at=_now() + timedelta(seconds=current_app.config["REMEMBER_DURATION"]),
        )
    )
    db.commit()
    g.remember_cookie = f"{selector}.{secret}"


def redeem() -> User | None:
    """The user a valid remember cookie names; the token is used up and replaced."""
    if cookie_name() not in request.cookies:
        return None
    token = _cookie_token()
    db = get_db()
    if token is not None:
        db.delete(token)
        db.commit()
        expires = token.expires_at.replace(tzinfo=token.expires_at.tzinfo or UTC)
        user = db.get(User, token.user_id) if expires > _now() else None
        if user is not None:
            issue(user)
            return user
    g.remember_cookie = ""  # unknown, expired or forged: forget it
    return None


def revoke_current() -> None:
    """Delete the token this request's cookie names (sign-out) and the cookie with it."""
    token = _cookie_token()
    if token is not None:
        db = get_db()
        db.execute(delete(RememberToken).where(RememberToken.selector == token.selector))
        db.commit()
    if cookie_name() in request.cookies:
        g.remember_cookie = ""


def revoke_all(user: User, *, keep_current: bool) -> None:
    """Delete the user's tokens, except the one this request's cookie names if asked to."""
    query = delete(RememberToken).where(RememberToken.user_id == user.id)
    current = _cookie_token() if keep_current and has_request_context() else None
    if current is not None:
        query = query.where(RememberToken.selector != current.selector)
    db = get_db()
    db.execute(query)
    db.commit()


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
