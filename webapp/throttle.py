"""Sign-in throttling (ASVS 2.2.1): failures counted per username and per client IP in the
database, so every worker and host sees the same counts.

After LIMIT failures for one username within WINDOW, attempts for it are refused for a delay
that doubles with each further failure, up to WINDOW. Usernames that do not exist are counted
the same way, so a lock tells nothing about which accounts exist. A correct password does not
bypass an active lock.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from flask import request
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from . import clock
from .models import SignInEvent, User

WINDOW = timedelta(minutes=15)
#: Failures for one username before it is locked.
USERNAME_LIMIT = 5
#: Failures from one client address (across usernames) before it is locked: password spraying.
IP_LIMIT = 25
#: The first lock's length; each further failure doubles it, up to WINDOW.
FIRST_DELAY = 30
#: How long sign-in history is kept.
HISTORY = timedelta(days=30)


def _lock_seconds(failures: int, limit: int, last: datetime, now: datetime) -> int:
    if failures < limit:
        return 0
    delay = min(FIRST_DELAY * 2 ** (failures - limit), int(WINDOW.total_seconds()))
    remaining = (clock.as_utc(last) + timedelta(seconds=delay) - now).total_seconds()
    return max(0, math.ceil(remaining))


def _failures(db: Session, *conditions: Any) -> tuple[int, datetime | None]:
    """How many failures match, and when the latest was."""
    count, last = db.execute(
        select(func.count(), func.max(SignInEvent.at)).where(
            SignInEvent.outcome == "failure", *conditions
        )
    ).one()
    return int(count), last


def retry_after(db: Session, username: str) -> int:
    """Seconds until this username (and this client) may try again; 0 when not locked."""
    now = clock.utcnow()
    key = username.lower()[:64]
    recent = SignInEvent.at >= now - WINDOW
    # A success for the username starts its count afresh (ids order events written together).
    last_success = db.scalar(
        select(func.max(SignInEvent.id)).where(
            SignInEvent.username_key == key, SignInEvent.outcome == "success"
        )
    )
    count, last = _failures(
        db, recent, SignInEvent.username_key == key, SignInEvent.id > (last_success or 0)
    )
    by_name = _lock_seconds(count, USERNAME_LIMIT, last, now) if last else 0
    count, last = _failures(db, recent, SignInEvent.ip == request.remote_addr)
    by_ip = _lock_seconds(count, IP_LIMIT, last, now) if last else 0
    return max(by_name, by_ip)


def record(db: Session, username: str, outcome: str, method: str, user: User | None) -> None:
    """Write one attempt to the history (and so to the counts); drop history past HISTORY."""
    now = clock.utcnow()
    db.add(
        SignInEvent(
            user_id=user.id if user else None,
            username_key=username.lower()[:64],
            ip=request.remote_addr,
            user_agent=request.user_agent.string[:512],
            at=now,
            outcome=outcome,
            method=method,
        )
    )
    if outcome != "success":
        db.execute(delete(SignInEvent).where(SignInEvent.at < now - HISTORY))
    db.commit()


def recent(db: Session, user_id: int, limit: int = 10) -> list[SignInEvent]:
    """The user's latest sign-ins and failed attempts, newest first."""
    query = select(SignInEvent).where(SignInEvent.user_id == user_id)
    return list(db.scalars(query.order_by(SignInEvent.at.desc()).limit(limit)))
