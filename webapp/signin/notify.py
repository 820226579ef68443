"""Telling a user that one of their factors changed or was misused (ASVS 2.8.5, 2.5.5)."""

from __future__ import annotations

from .. import events
from ..models import User


def tell_user(user: User, change: str) -> None:
    """An event line now; mail once the app can send it."""
    events.record("security_changed", user_id=user.id, change=change)
    # MAIL HOOK (issue 17): when webapp/mail.py exists, mail `change` to user.email here.
