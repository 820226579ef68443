"""Telling a user that one of their factors changed or was misused (ASVS 2.8.5, 2.5.5): an
event line, and a mail to the account's address when it has one."""

from __future__ import annotations

from .. import events, mail
from ..models import User

#: What each change is called in the mail.
CHANGES = {
    "totp_code_reused": "an authenticator code that had already been used was tried again",
    "passkey_added": "a passkey was added",
    "totp_enabled": "an authenticator app was turned on",
    "totp_disabled": "the authenticator app was turned off",
    "recovery_codes_replaced": "new recovery codes were made (the old ones no longer work)",
    "passkey_removed": "a passkey was removed",
    "last_passkey_removed": "the last passkey was removed",
}


def tell_user(user: User, change: str) -> None:
    events.record("security_changed", user_id=user.id, change=change)
    if not user.email:
        return
    mail.send(
        mail.compose(
            user.email,
            "A change to how you sign in",
            [
                f"On the account {user.username}, {CHANGES.get(change, change)}.",
                "If this was not you, reset your password and check your security settings:",
            ],
            mail.link("security.security"),
        )
    )
