"""The current time, in one replaceable place so that tests can move it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import current_app


def now() -> float:
    """Seconds since the epoch; tests pass a fake as CLOCK in the test config."""
    clock = current_app.config.get("CLOCK") or time.time
    return float(clock())


def utcnow() -> datetime:
    """now() as an aware UTC datetime, for database columns."""
    return datetime.fromtimestamp(now(), UTC)


def as_utc(moment: datetime) -> datetime:
    """A datetime read back from the database (SQLite drops the zone) as aware UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
