"""The mails an account's own changes send: the verification link of a new address, "your
password was changed", and the "was this you?" notice of a sign-in from a device the account
has not used before."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import clock, events, mail
from .db import get_db
from .mail_tokens import NOTICE, VERIFY, issue, retire
from .models import KnownDevice, User, UserSession
from .sessions import index as session_index

VERIFY_TIMEOUT = timedelta(days=2)


def password_changed(user: User, how: str) -> None:
    """Tell the user (if they have an address) that their password changed, and `how`."""
    if not user.email:
        return
    mail.send(
        mail.compose(
            user.email,
            "Your password was changed",
            [
                f"The password of {user.username} was just changed {how}.",
                "If this was not you, reset your password at once:",
            ],
            mail.link("recovery.forgot"),
        )
    )


def send_verification(user: User, email: str) -> None:
    """Mail a link that confirms `email` as the user's address (earlier links die)."""
    db = get_db()
    retire(db, user, VERIFY)
    token = issue(db, user, VERIFY, VERIFY_TIMEOUT, email=email)
    events.record("email_verification_sent", user_id=user.id)
    mail.send(
        mail.compose(
            email,
            "Confirm your email address",
            [
                f"Please confirm that {email} is the address of {user.username}.",
                "Open this link within 2 days and press the button on its page. "
                "If you did not ask for this, ignore this mail.",
            ],
            mail.link("recovery.verify_email", token=token),
        )
    )


def device_hash(user_agent: str) -> str:
    """A browser and system, by family (no version: an update is the same device)."""
    family = re.sub(r" \d+( on |$)", r"\1", session_index.describe_device(user_agent))
    return hashlib.sha256(f"device:{family}".encode()).hexdigest()


def after_sign_in(user: User, method: str, session_row: UserSession) -> None:
    """policy.start()'s mail: the verification link of a new account, and the "was this
    you?" notice of a sign-in from a device the account has not used before (never for the
    first device, a remembered one, or to an unverified address)."""
    if method == "remember":
        return
    db, now = get_db(), clock.utcnow()
    device = device_hash(session_row.user_agent)
    known = db.get(KnownDevice, (user.id, device))
    if known is not None:
        known.last_seen = now
        db.commit()
        return
    seen_before = db.scalar(select(KnownDevice.user_id).where(KnownDevice.user_id == user.id))
    db.add(KnownDevice(user_id=user.id, device_hash=device, first_seen=now, last_seen=now))
    try:
        db.commit()
    except IntegrityError:  # a parallel sign-in from this device recorded it (and tells) first
        db.rollback()
        return
    if method == "signup" and user.email:
        send_verification(user, user.email)
    if seen_before is None or not user.email_verified or user.email is None:
        return
    lifetime = timedelta(seconds=current_app.config["REMEMBER_DURATION"])
    bound = f"{session_row.id}:{session_row.remember_series or ''}"
    token = issue(db, user, NOTICE, lifetime, bound_to=bound)
    when = clock.utcnow().strftime("%Y-%m-%d %H:%M UTC")
    device_name = session_index.describe_device(session_row.user_agent)
    events.record("new_device_notice", user_id=user.id)
    mail.send(
        mail.compose(
            user.email,
            "New sign-in to your account",
            [
                f"{user.username} signed in from a new device: {device_name}, "
                f"address {session_row.ip or 'unknown'}, at {when}.",
                "If this was you, there is nothing to do. If it was not, open this link to "
                "end that session at once, then change your password:",
            ],
            mail.link("recovery.not_me", token=token),
        )
    )
