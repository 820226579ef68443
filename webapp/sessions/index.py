"""The per-user index of live sessions in the database, for listing and revoking them.

Rows hold SHA-256 of the session id, which is also the store's key for the entry: revoking
deletes the entry by that hash, and a leaked table gives no usable session id. A row names the
remember-me chain that signed its session in (remember.py): ending the session ends the chain,
so the device cannot sign itself straight back in.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import lru_cache

from flask import current_app, request
from sqlalchemy import delete, select, update
from ua_parser import parse

from .. import clock
from ..db import get_db
from ..models import RememberToken, User, UserSession
from .store import session_interface, sid_hash


def create(
    user: User, sid: str, remember_series: str | None = None, method: str = "password"
) -> UserSession:
    now = clock.utcnow()
    row = UserSession(
        id=secrets.token_hex(8),  # hex: never starts with "-", which a CLI would take as an option
        sid_hash=sid_hash(sid),
        user_id=user.id,
        created_at=now,
        last_active_at=now,
        ip=request.remote_addr,
        user_agent=request.user_agent.string[:512],
        remember_series=remember_series,
        method=method,
    )
    db = get_db()
    db.add(row)
    db.commit()
    return row


def find(sid: str) -> UserSession | None:
    return get_db().scalar(select(UserSession).where(UserSession.sid_hash == sid_hash(sid)))


def rotate(old_sid: str, new_sid: str) -> None:
    """The session got a new id: point its row at it."""
    db = get_db()
    db.execute(
        update(UserSession)
        .where(UserSession.sid_hash == sid_hash(old_sid))
        .values(sid_hash=sid_hash(new_sid))
    )
    db.commit()


def touch(sid: str) -> None:
    db = get_db()
    db.execute(
        update(UserSession)
        .where(UserSession.sid_hash == sid_hash(sid))
        .values(last_active_at=clock.utcnow())
    )
    db.commit()


def remove(sid: str, *, forget_device: bool) -> None:
    """Forget a session that ended; its store entry is handled by the caller. Sign-out forgets
    the device too (its remember-me chain ends); expiry does not, since signing a device back
    in after its session timed out is what remember-me is for."""
    db = get_db()
    if forget_device:
        row = find(sid)
        if row is not None:
            _end_chains([row])
    db.execute(delete(UserSession).where(UserSession.sid_hash == sid_hash(sid)))
    db.commit()


def _end_chains(rows: list[UserSession], keep_token: str | None = None) -> None:
    """Delete the remember-me tokens of the chains these sessions belong to (but `keep_token`);
    the caller commits."""
    chains = {row.remember_series for row in rows if row.remember_series}
    if chains:
        query = delete(RememberToken).where(RememberToken.series.in_(chains))
        if keep_token is not None:
            query = query.where(RememberToken.selector != keep_token)
        get_db().execute(query)


def revoke(rows: list[UserSession], keep_token: str | None = None) -> int:
    """End these sessions: delete their store entries and rows, and end their remember-me
    chains (all but the token `keep_token`). Their next request, a poll included, finds no
    session, and no remember-me cookie signs it back in.

    Entries go first, so that whatever stops this half-way leaves the sessions listed and
    revocable. A request of one of them that checked its row before the commit may write its
    entry back after the first pass (the store's write guard looks again after writing, but
    may still see the row): the entries are deleted again once the rows are gone.
    """
    interface = session_interface(current_app)
    db = get_db()
    hashes = [row.sid_hash for row in rows]
    for row in rows:
        interface.delete_by_hash(row.sid_hash)
        db.delete(row)
    _end_chains(rows, keep_token)
    db.commit()
    for hashed in hashes:
        interface.delete_by_hash(hashed)
    return len(rows)


def sessions_of(user_id: int) -> list[UserSession]:
    """Every indexed session of the user, newest activity first (some may have timed out)."""
    query = select(UserSession).where(UserSession.user_id == user_id)
    return list(get_db().scalars(query.order_by(UserSession.last_active_at.desc())))


def is_live(row: UserSession) -> bool:
    config = current_app.config
    now = clock.utcnow()
    idle_end = clock.as_utc(row.last_active_at) + timedelta(seconds=config["IDLE_TIMEOUT"])
    absolute_end = clock.as_utc(row.created_at) + timedelta(seconds=config["ABSOLUTE_TIMEOUT"])
    return now < min(idle_end, absolute_end)


def live_sessions_of(user_id: int) -> list[UserSession]:
    return [row for row in sessions_of(user_id) if is_live(row)]


def revoke_all(user_id: int, keep_sid: str | None = None, keep_token: str | None = None) -> int:
    """End every session of the user except `keep_sid`'s (if given), with their remember-me
    chains except the token `keep_token` (this device's)."""
    keep = sid_hash(keep_sid) if keep_sid else None
    return revoke([row for row in sessions_of(user_id) if row.sid_hash != keep], keep_token)


@lru_cache(maxsize=256)
def describe_device(user_agent: str) -> str:
    """ "Firefox 130 on Windows", from a User-Agent string."""
    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else "Unknown browser"
    if result.user_agent and result.user_agent.major:
        browser += f" {result.user_agent.major}"
    system = result.os.family if result.os else None
    return f"{browser} on {system}" if system and system != "Other" else browser
