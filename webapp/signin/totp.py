"""The authenticator app (RFC 6238 TOTP: SHA-1, 6 digits, 30 s) and its recovery codes.

A code is accepted for the current time step or one either side (clock drift), and only for a
step later than the last one accepted: the same code never works twice, and neither does an
older one. Recovery codes are random, shown once, kept salted and hashed, and each works once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pyotp
import segno
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from .. import clock
from ..models import RecoveryCode, TotpAuthenticator, User

PERIOD = 30
DIGITS = 6
#: Time steps either side of now whose codes are accepted (RFC 6238's recommended one).
DRIFT = 1
RECOVERY_CODES = 10
#: What recovery codes are made of: base32 without look-alikes, lower case (50 bits each).
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
ISSUER = "webapp"


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, RFC 4226's recommended length


def provisioning_uri(secret: str, user: User) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


def qr_code(secret: str, user: User) -> str:
    """The otpauth:// URI as an SVG data URI (an <img>, so the CSP needs no inline script)."""
    return str(segno.make(provisioning_uri(secret, user), error="m").svg_data_uri(scale=4))


def _normalized(code: str) -> str:
    return "".join(code.split())


def matching_step(secret: str, code: str) -> int | None:
    """The time step around now whose code `code` is, if any."""
    code = _normalized(code)
    if len(code) != DIGITS or not code.isdigit():
        return None
    now_step = int(clock.now() // PERIOD)
    totp = pyotp.TOTP(secret)
    for step in range(now_step - DRIFT, now_step + DRIFT + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def is_replay(db: Session, user: User, code: str) -> bool:
    """Whether `code` is a current code that was accepted already (someone saw it)."""
    found = authenticator(db, user)
    step = matching_step(found.secret, code) if found else None
    return found is not None and step is not None and step <= (found.last_used_step or -1)


def authenticator(db: Session, user: User) -> TotpAuthenticator | None:
    return db.get(TotpAuthenticator, user.id)


def is_enabled(db: Session, user: User) -> bool:
    return authenticator(db, user) is not None


def accept_code(db: Session, user: User, code: str) -> bool:
    """Whether `code` is the user's current code not used before; using it uses it up (one
    UPDATE that only a later step passes: of two requests with one code, one wins)."""
    found = authenticator(db, user)
    step = matching_step(found.secret, code) if found else None
    if step is None:
        return False
    used = db.execute(
        update(TotpAuthenticator)
        .where(
            TotpAuthenticator.user_id == user.id,
            or_(
                TotpAuthenticator.last_used_step.is_(None),
                TotpAuthenticator.last_used_step < step,
            ),
        )
        .values(last_used_step=step)
    )
    db.commit()
    return used.rowcount == 1  # type: ignore[attr-defined]


def enable(db: Session, user: User, secret: str, first_step: int) -> list[str]:
    """Turn the authenticator on with `secret`, its first code (step) already used; the new
    recovery codes, to show once."""
    db.execute(delete(TotpAuthenticator).where(TotpAuthenticator.user_id == user.id))
    db.add(TotpAuthenticator(user_id=user.id, secret=secret, last_used_step=first_step))
    return new_recovery_codes(db, user)


def disable(db: Session, user: User) -> bool:
    """Turn the authenticator off and drop its recovery codes; whether it was on."""
    removed = db.execute(delete(TotpAuthenticator).where(TotpAuthenticator.user_id == user.id))
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.commit()
    return bool(removed.rowcount)  # type: ignore[attr-defined]


def _hash(salt: str, code: str) -> str:
    return hashlib.sha256((salt + code).encode()).hexdigest()


def new_recovery_codes(db: Session, user: User) -> list[str]:
    """Replace the user's recovery codes with RECOVERY_CODES new ones (returned, to show once)."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
        salt = secrets.token_hex(4)  # 32 bits, per code (ASVS 2.6.2)
        db.add(RecoveryCode(user_id=user.id, code_hash=f"{salt}${_hash(salt, raw)}"))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    db.commit()
    return codes


def recovery_codes_left(db: Session, user: User) -> int:
    return len(db.scalars(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id)).all())


def use_recovery_code(db: Session, user: User, code: str) -> bool:
    """Whether `code` is one of the user's unused recovery codes; using it deletes it (of two
    requests with one code, only one deletes it)."""
    raw = _normalized(code).replace("-", "").lower()
    for row in db.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        salt, _, hashed = row.code_hash.partition("$")
        if hmac.compare_digest(_hash(salt, raw), hashed):
            taken = db.execute(delete(RecoveryCode).where(RecoveryCode.id == row.id))
            db.commit()
            return taken.rowcount == 1  # type: ignore[attr-defined]
    return False
