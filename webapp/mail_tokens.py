"""Single-use links for mail: a random token in the link, only its SHA-256 in the database
(MailToken). A reset link is bound to the password it was issued against, so it dies when the
password changes."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from . import clock
from .models import MailToken, User

RESET, VERIFY, NOTICE = "reset", "verify", "notice"
#: What secrets.token_urlsafe(32) makes: anything else names no link and is not looked up.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def password_fingerprint(user: User) -> str:
    """What a reset link is bound to: it no longer matches once the password changes."""
    return digest("reset:" + user.password_hash)


def issue(
    db: Session,
    user: User,
    purpose: str,
    lifetime: timedelta,
    *,
    email: str | None = None,
    bound_to: str | None = None,
) -> str:
    """A new single-use token for a mail link; only its digest is stored."""
    token = secrets.token_urlsafe(32)
    now = clock.utcnow()
    db.execute(delete(MailToken).where(MailToken.expires_at < now))  # no table grows for ever
    db.add(
        MailToken(
            purpose=purpose,
            token_hash=digest(token),
            user_id=user.id,
            email=email,
            bound_to=bound_to,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    db.commit()
    return token


def find_token(db: Session, token: str, purpose: str) -> tuple[MailToken, User] | None:
    """The unused, unexpired link `token` names, with its user; None for any other."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    row = db.scalar(
        select(MailToken).where(MailToken.token_hash == digest(token), MailToken.purpose == purpose)
    )
    if row is None or row.used_at is not None or clock.as_utc(row.expires_at) <= clock.utcnow():
        return None
    user = db.get(User, row.user_id)
    if user is None or (purpose == RESET and row.bound_to != password_fingerprint(user)):
        return None
    return row, user


def use(db: Session, row: MailToken) -> bool:
    """Mark the link used; False when another request used it first."""
    used = db.execute(
        update(MailToken)
        .where(MailToken.id == row.id, MailToken.used_at.is_(None))
        .values(used_at=clock.utcnow())
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return bool(used.rowcount == 1)  # type: ignore[attr-defined]


def retire(db: Session, user: User, purpose: str) -> None:
    """Every unused link of this purpose of the user dies (a newer one replaces them)."""
    db.execute(
        update(MailToken)
        .where(
            MailToken.user_id == user.id,
            MailToken.purpose == purpose,
            MailToken.used_at.is_(None),
        )
        .values(used_at=clock.utcnow())
        .execution_options(synchronize_session=False)
    )
    db.commit()
