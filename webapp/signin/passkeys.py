"""Passkeys (WebAuthn, with py_webauthn): registration and sign-in ceremonies.

Discoverable credentials only, user verification required (a passkey is both factors), sign
counters checked (a clone that reuses a counter is refused), each challenge single-use and
bound to the browser that asked for it (challenges.py). The relying party id and the origin
come from configuration (RP_ID, BASE_URL), never from the request.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from .. import clock
from ..config import relying_party_id
from ..models import Passkey, User
from . import challenges

REGISTER = "passkey-register"
SIGN_IN = "passkey-sign-in"
#: The session method of a passkey sign-in.
METHOD = "passkey"
RP_NAME = "webapp"
#: Milliseconds the browser gives the user.
TIMEOUT = 300_000


class PasskeyError(Exception):
    """A ceremony that failed; the message is safe to show."""


def _rp_id() -> str:
    return relying_party_id(current_app.config)


def _origin() -> str:
    return str(current_app.config["BASE_URL"]).rstrip("/")


def user_handle(user: User) -> bytes:
    """The WebAuthn user handle: the user's id (no personal data, never reused)."""
    return str(user.id).encode()


def of_user(db: Session, user: User) -> list[Passkey]:
    query = select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.created_at)
    return list(db.scalars(query))


def registration_options(db: Session, user: User) -> dict[str, Any]:
    """Creation options for a new passkey of `user`; its challenge is kept for this session."""
    options = generate_registration_options(
        rp_id=_rp_id(),
        rp_name=RP_NAME,
        user_id=user_handle(user),
        user_name=user.username,
        user_display_name=user.name,
        timeout=TIMEOUT,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id))
            for p in of_user(db, user)
        ],
    )
    challenges.begin(REGISTER, user_id=user.id, challenge=options.challenge)
    return dict(json.loads(options_to_json(options)))


def register(db: Session, user: User, credential: dict[str, Any], name: str) -> Passkey:
    """Verify the browser's new credential against this session's challenge and keep it."""
    step = challenges.take(REGISTER)
    if step is None or step.user_id != user.id or step.challenge is None:
        raise PasskeyError("The request expired. Try again.")
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=step.challenge,
            expected_rp_id=_rp_id(),
            expected_origin=_origin(),
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise PasskeyError("The passkey could not be verified.") from error
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)):
        raise PasskeyError("That passkey is registered already.")
    passkey = Passkey(
        user_id=user.id,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=name.strip()[:64] or f"Passkey {len(of_user(db, user)) + 1}",
        created_at=clock.utcnow(),
    )
    db.add(passkey)
    db.commit()
    return passkey


def authentication_options() -> dict[str, Any]:
    """Request options for any of this site's discoverable passkeys; the challenge is bound to
    this browser."""
    options = generate_authentication_options(
        rp_id=_rp_id(), timeout=TIMEOUT, user_verification=UserVerificationRequirement.REQUIRED
    )
    challenges.begin(SIGN_IN, challenge=options.challenge)
    return dict(json.loads(options_to_json(options)))


def authenticate(db: Session, credential: dict[str, Any]) -> Passkey:
    """The passkey whose assertion this is, checked against this browser's challenge, its
    public key, its user handle and its sign counter; its counter and last use are updated."""
    step = challenges.take(SIGN_IN)
    if step is None or step.challenge is None:
        raise PasskeyError("The request expired. Try again.")
    credential_id = credential.get("id") if isinstance(credential, dict) else None
    passkey = (
        db.scalar(select(Passkey).where(Passkey.credential_id == credential_id))
        if isinstance(credential_id, str)
        else None
    )
    if passkey is None:
        raise PasskeyError("This passkey is not registered here (any more).")
    handle = (credential.get("response") or {}).get("userHandle")
    if handle and base64url_to_bytes(str(handle)) != str(passkey.user_id).encode():
        raise PasskeyError("This passkey belongs to another account.")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=step.challenge,
            expected_rp_id=_rp_id(),
            expected_origin=_origin(),
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise PasskeyError("The passkey could not be verified.") from error
    # Only from the counter just checked: of two uses with one counter value, one wins.
    used = db.execute(
        update(Passkey)
        .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
        .values(sign_count=verified.new_sign_count, last_used_at=clock.utcnow())
    )
    db.commit()
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise PasskeyError("The passkey could not be verified.")
    db.refresh(passkey)
    return passkey
