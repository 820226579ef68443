"""The one validator for `next`: only a path on this site may be a redirect target."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

DEFAULT_TARGET = "/profile"
MAX_LENGTH = 2048


def _is_local_path(value: str) -> bool:
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return False
    # Browsers drop tabs and newlines and treat "\" as "/", so any of them can turn a path
    # into "//host"; no legitimate path of ours needs them.
    if "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


def safe_next(value: str | None) -> str | None:
    """`value` if it is a same-site path, checked raw and again percent-decoded; else None."""
    if not value or len(value) > MAX_LENGTH:
        return None
    if _is_local_path(value) and _is_local_path(unquote(value)):
        return value
    return None


def next_or_default(value: str | None) -> str:
    return safe_next(value) or DEFAULT_TARGET
