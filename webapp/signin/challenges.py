"""Short-lived, single-use sign-in steps kept on the server, bound to the browser that began them.

A step (a WebAuthn challenge, or a correct password waiting for its second factor) is keyed by
a hash of the browser's CSRF token and the step's purpose: the anonymous visitor's token lives
in its signed cookie, a signed-in user's in the session. Another browser cannot use it, a step
is taken once (the delete that takes it must find it), and it lapses after LIFETIME.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import session
from sqlalchemy import delete

from .. import clock
from ..db import get_db
from ..models import SignInChallenge

LIFETIME = timedelta(minutes=5)


def _key(purpose: str) -> str | None:
    token = session.get("csrf_token")
    if not token:
        return None
    return hashlib.sha256(f"{purpose}:{token}".encode()).hexdigest()


def begin(purpose: str, **fields: object) -> SignInChallenge:
    """Record a new step for this browser, replacing any earlier one of the same purpose.
    Called from POST requests only: CSRFProtect made sure the browser has a token."""
    key = _key(purpose)
    if key is None:
        raise RuntimeError("a sign-in step needs the browser's CSRF token")
    db = get_db()
    now = clock.utcnow()
    db.execute(delete(SignInChallenge).where(SignInChallenge.expires_at < now))
    db.execute(delete(SignInChallenge).where(SignInChallenge.key == key))
    row = SignInChallenge(key=key, purpose=purpose, expires_at=now + LIFETIME, **fields)
    db.add(row)
    db.commit()
    return row


def current(purpose: str) -> SignInChallenge | None:
    """This browser's live step of `purpose`, without taking it."""
    key = _key(purpose)
    row = get_db().get(SignInChallenge, key) if key else None
    if row is None or clock.as_utc(row.expires_at) <= clock.utcnow():
        return None
    return row


def take(purpose: str) -> SignInChallenge | None:
    """This browser's live step of `purpose`, deleted: of two requests, only one gets it."""
    row = current(purpose)
    if row is None:
        return None
    db = get_db()
    db.expunge(row)
    taken = db.execute(delete(SignInChallenge).where(SignInChallenge.key == row.key))
    db.commit()
    return row if taken.rowcount == 1 else None  # type: ignore[attr-defined]


def forget(purpose: str) -> None:
    """Drop this browser's step of `purpose`, if any."""
    key = _key(purpose)
    if key:
        get_db().execute(delete(SignInChallenge).where(SignInChallenge.key == key))
        get_db().commit()
