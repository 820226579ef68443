"""What the session widget and /session show: the one place that reads the session for them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import render_template
from flask_login import current_user

from . import session_policy

AUTHENTICATED = "authenticated"
UNAUTHENTICATED = "unauthenticated"


def known_status() -> str:
    return AUTHENTICATED if current_user.is_authenticated else UNAUTHENTICATED


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_json() -> dict[str, Any]:
    """next-auth's /api/auth/session shape: {} when signed out."""
    if not current_user.is_authenticated:
        return {}
    expires = session_policy.expires_at()
    return {
        "user": current_user.as_session_user(),
        "expires": iso_utc(expires) if expires is not None else None,
    }


def render_fragment() -> str:
    return render_template("partials/session_widget.html", widget_status=known_status())
