"""Throttling of password checks and sign-ups (ASVS 2.2.1), counted in the database so that
every worker and host sees the same counts.

Every attempt is reserved before its password costs a hash: a "pending" row is written and
the counts are read in one transaction that holds a lock (PostgreSQL: advisory locks on the
username and the address; SQLite: the database's write lock, which the insert takes), so
parallel attempts take turns and no more than the limit are ever checked. Once the hash has
answered, the row becomes a success or a failure (`record`); a row left pending (a killed
worker) counts as a failure until it ages out of the window.

What is counted:
- Sign-ins, per username (from anywhere) and per client address (across usernames): after
  LIMIT failures, attempts are refused for a delay that doubles with each further failure, up
  to WINDOW. Unknown usernames count the same, so a lock tells nothing about which accounts
  exist, and a correct password does not bypass a lock.
- A signed-in user's own password confirmations (re-authentication, ending sessions, changing
  the password), per user: failures of anonymous clients never block them, so a victim can
  always evict an attacker, and the user's own slips never lock sign-in.
- Sign-ups per client address per SIGNUP_WINDOW (the app's SIGNUP_LIMIT).

A refused attempt leaves at most one "locked" row per lock and key, with a shortened
User-Agent: a locked client cannot fill the database.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from flask import g, request
from sqlalchemy import ColumnElement, delete, func, select, text
from sqlalchemy.orm import Session

from . import clock
from .models import SignInEvent, User

WINDOW = timedelta(minutes=15)
#: Failures for one username before it is locked.
USERNAME_LIMIT = 5
#: Failures from one client address (across usernames) before it is locked: password spraying.
IP_LIMIT = 25
#: Wrong passwords a signed-in user may enter to confirm an action before confirmations lock.
CONFIRM_LIMIT = 5
#: The first lock's length; each further failure doubles it, up to WINDOW.
FIRST_DELAY = 30
#: The period over which sign-ups per address are counted.
SIGNUP_WINDOW = timedelta(hours=1)
#: How long sign-in history is kept.
HISTORY = timedelta(days=30)
#: How much of the User-Agent a "locked" row keeps.
REFUSED_USER_AGENT = 128

#: The method of a signed-in user's own confirmations (shown as "Password re-entered").
CONFIRM = "reauthenticate"
SIGN_UP = "signup"
#: Outcomes that count as failed: an attempt still pending may be a killed worker's.
FAILED = ("failure", "pending")
#: flask.g key: this request's reserved attempt (one per request).
ATTEMPT = "webapp.throttle.attempt"

#: Rows of sign-in attempts (what the username and address locks count).
SIGN_IN = SignInEvent.method.not_in((CONFIRM, SIGN_UP))


@dataclass(frozen=True)
class Refusal:
    """A lock that holds: how long it still does, and which rows belong to it."""

    wait: int
    key: Sequence[ColumnElement[bool]]
    since: datetime


class Reserved(NamedTuple):
    """A request's reserved attempt: its row, and the (outcome, method) it was settled as."""

    id: int
    settled: tuple[str, str] | None


def _lock_seconds(failures: int, limit: int, last: datetime, now: datetime) -> int:
    if failures < limit:
        return 0
    delay = min(FIRST_DELAY * 2 ** (failures - limit), int(WINDOW.total_seconds()))
    remaining = (clock.as_utc(last) + timedelta(seconds=delay) - now).total_seconds()
    return max(0, math.ceil(remaining))


def _lock(
    db: Session,
    own: SignInEvent,
    limit: int,
    key: Sequence[ColumnElement[bool]],
    *,
    reset_by_success: bool,
) -> Refusal | None:
    """Whether the failures matching `key` (before this attempt) lock it."""
    conditions = [*key, SignInEvent.at >= own.at - WINDOW, SignInEvent.id != own.id]
    if reset_by_success:  # a success starts the count afresh (ids order rows written together)
        last_success = select(func.max(SignInEvent.id)).where(
            *key, SignInEvent.outcome == "success"
        )
        conditions.append(SignInEvent.id > func.coalesce(last_success.scalar_subquery(), 0))
    count, last = db.execute(
        select(func.count(), func.max(SignInEvent.at)).where(
            SignInEvent.outcome.in_(FAILED), *conditions
        )
    ).one()
    wait = _lock_seconds(int(count), limit, last, own.at) if last else 0
    return Refusal(wait, key, clock.as_utc(last)) if wait else None


def _sign_up_cap(db: Session, own: SignInEvent, limit: int) -> Refusal | None:
    """Whether this address has used up its sign-ups for the window."""
    key = (SignInEvent.method == SIGN_UP, SignInEvent.ip == own.ip)
    count, first = db.execute(
        select(func.count(), func.min(SignInEvent.at)).where(
            *key,
            SignInEvent.at > own.at - SIGNUP_WINDOW,
            SignInEvent.outcome != "locked",
            SignInEvent.id != own.id,
        )
    ).one()
    if count < limit:
        return None
    remaining = (clock.as_utc(first) + SIGNUP_WINDOW - own.at).total_seconds()
    return Refusal(max(1, math.ceil(remaining)), key, clock.as_utc(first))


def _advisory_lock(db: Session, name: str) -> None:
    """PostgreSQL: wait for, and hold until commit, a lock named `name` (attempts on one key
    take turns)."""
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)
    db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _new_row(username: str, method: str, user: User | None, outcome: str) -> SignInEvent:
    return SignInEvent(
        user_id=user.id if user else None,
        username_key=username.lower()[:64],
        ip=request.remote_addr,
        user_agent=request.user_agent.string[:512],
        at=clock.utcnow(),
        outcome=outcome,
        method=method,
    )


#: The locks a reservation can be refused by, given its row (not yet written: id None).
Rules = Callable[[SignInEvent], Sequence[Refusal | None]]


def _holding(refusals: Sequence[Refusal | None]) -> Refusal | None:
    """The longest of the locks that hold, if any."""
    return max((r for r in refusals if r is not None), key=lambda r: r.wait, default=None)


def _reserve(db: Session, row: SignInEvent, locks: Sequence[str], rules: Rules) -> int:
    """Write `row` as a pending attempt unless a lock holds: 0, or the seconds to wait."""
    # A lock already in force needs no write to stay in force: a flood of refused attempts
    # reads only, and never queues for SQLite's write lock.
    refusal = _holding(rules(row))
    written = False
    if refusal is None:
        if db.get_bind().dialect.name == "postgresql":
            for name in locks:  # always in the same order: no deadlock
                _advisory_lock(db, name)
        db.add(row)
        db.flush()  # SQLite: this insert takes the database's write lock until commit
        written = True
        refusal = _holding(rules(row))  # now counted alone: no other attempt is in between
        if refusal is None:
            db.commit()
            setattr(g, ATTEMPT, Reserved(row.id, None))
            return 0
    already = db.scalar(
        select(SignInEvent.id)
        .where(
            *refusal.key,
            SignInEvent.outcome == "locked",
            SignInEvent.at >= refusal.since,
            SignInEvent.id != row.id,
        )
        .limit(1)
    )
    if already is None:  # the first refusal of a lock is kept, in short
        row.outcome = "locked"
        row.user_agent = row.user_agent[:REFUSED_USER_AGENT]
        db.add(row)
        db.commit()
    elif written:  # the others leave nothing
        db.rollback()
    return refusal.wait


def reserve_sign_in(db: Session, username: str, method: str = "password") -> int:
    """Reserve a sign-in attempt for `username` from this client: 0 to go ahead and check the
    password, else the seconds until the username or the address may try again."""
    key = username.lower()[:64]
    row = _new_row(username, method, None, "pending")
    by_name = (SIGN_IN, SignInEvent.username_key == key)
    by_address = (SIGN_IN, SignInEvent.ip == row.ip)
    return _reserve(
        db,
        row,
        (f"sign-in:{key}", f"sign-in-ip:{row.ip}"),
        lambda row: [
            _lock(db, row, USERNAME_LIMIT, by_name, reset_by_success=True),
            _lock(db, row, IP_LIMIT, by_address, reset_by_success=False),
        ],
    )


def reserve_confirmation(db: Session, user: User) -> int:
    """Reserve a check of the signed-in `user`'s own password: 0 to go ahead, else the seconds
    until their confirmations may be tried again."""
    row = _new_row(user.username, CONFIRM, user, "pending")
    key = (SignInEvent.method == CONFIRM, SignInEvent.user_id == user.id)
    return _reserve(
        db,
        row,
        (f"confirm:{user.id}",),
        lambda row: [_lock(db, row, CONFIRM_LIMIT, key, reset_by_success=True)],
    )


def reserve_sign_up(db: Session, username: str, limit: int) -> int:
    """Reserve a sign-up from this client (at most `limit` per SIGNUP_WINDOW, refused ones
    included): 0 to go ahead, else the seconds until the address may sign up again."""
    row = _new_row(username, SIGN_UP, None, "pending")
    return _reserve(db, row, (f"sign-up:{row.ip}",), lambda row: [_sign_up_cap(db, row, limit)])


def record(db: Session, username: str, outcome: str, method: str, user: User | None) -> None:
    """Settle this request's reserved attempt; write anything else as a row of its own (a
    remember-me sign-in); drop history past HISTORY. The same outcome told twice (a
    confirmation that is also a re-authentication) stays one row."""
    reserved: Reserved | None = g.get(ATTEMPT)
    if reserved is not None and reserved.settled == (outcome, method):
        return
    if reserved is not None and reserved.settled is None:
        row = db.get_one(SignInEvent, reserved.id)
        setattr(g, ATTEMPT, Reserved(reserved.id, (outcome, method)))
    else:
        row = _new_row(username, method, user, outcome)
        db.add(row)
    row.user_id, row.outcome, row.method = (user.id if user else None), outcome, method
    if outcome != "success":
        expired = delete(SignInEvent).where(SignInEvent.at < clock.utcnow() - HISTORY)
        db.execute(expired.execution_options(synchronize_session=False))
    db.commit()


def recent(db: Session, user_id: int, limit: int = 10) -> list[SignInEvent]:
    """The user's latest sign-ins and failed attempts, newest first."""
    query = select(SignInEvent).where(SignInEvent.user_id == user_id)
    return list(db.scalars(query.order_by(SignInEvent.at.desc()).limit(limit)))
