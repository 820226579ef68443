"""The current time, in one replaceable place so that tests can move it."""

from __future__ import annotations

import time

from flask import current_app


def now() -> float:
    """Seconds since the epoch; tests pass a fake as CLOCK in the test config."""
    clock = current_app.config.get("CLOCK") or time.time
    return float(clock())
