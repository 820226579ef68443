"""Session events as structured log lines: one JSON object per sign-in, sign-out, failure,
lockout, expiry, revocation and password change. Never a password or a whole session id."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from flask import has_request_context, request

logger = logging.getLogger("webapp.events")

USER_AGENT_MAX = 200


def session_ref(sid: str | None) -> str | None:
    """A short, one-way reference to a session id: enough to follow one session in the logs."""
    return hashlib.sha256(sid.encode()).hexdigest()[:12] if sid else None


def record(event: str, *, user_id: Any = None, sid: str | None = None, **fields: Any) -> None:
    line: dict[str, Any] = {"event": event, "user_id": user_id, "session": session_ref(sid)}
    if has_request_context():
        line["ip"] = request.remote_addr
        line["user_agent"] = request.user_agent.string[:USER_AGENT_MAX]
    line.update(fields)
    logger.info(json.dumps(line, sort_keys=True, default=str))
