"""webapp's logs as JSON lines (python-json-logger), session events among them: one object per
sign-in, sign-out, failure, lockout, expiry, revocation and password change. Never a password
or a whole session id."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from flask import Flask, has_request_context, request
from flask.logging import default_handler, wsgi_errors_stream
from pythonjsonlogger.json import JsonFormatter

logger = logging.getLogger("webapp.events")

USER_AGENT_MAX = 200


def session_ref(sid: str | None) -> str | None:
    """A short, one-way reference to a session id: enough to follow one session in the logs."""
    return hashlib.sha256(sid.encode()).hexdigest()[:12] if sid else None


class Event(dict[str, Any]):
    """An event's fields, logged as the record's message: a JSON formatter makes them the
    line's own keys; any other formatter (pytest's caplog, a deployer's text handler) shows
    them as one JSON object."""

    def __str__(self) -> str:
        return json.dumps(self, sort_keys=True, default=str)


class LineFormatter(JsonFormatter):
    """One JSON object per line: time (UTC), level, logger, then the message or the event's
    fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if log_data.get("message") == "":  # an event: its fields are the message
            del log_data["message"]
        return log_data


#: Writes where Flask's default handler would (the WSGI server's error stream during a request,
#: else stderr), in JSON; one for every app, like Flask's.
json_handler = logging.StreamHandler(wsgi_errors_stream)  # type: ignore[call-overload]
json_handler.setFormatter(LineFormatter())


def init_app(app: Flask) -> None:
    """webapp's logs (app.logger and its children, webapp.events among them) as JSON lines, in
    place of Flask's default text handler. A deployer's own logging configuration, which keeps
    Flask from adding its handler, is left alone."""
    if default_handler in app.logger.handlers:
        app.logger.removeHandler(default_handler)
        app.logger.addHandler(json_handler)


def record(event: str, *, user_id: Any = None, sid: str | None = None, **fields: Any) -> None:
    line = Event(event=event, user_id=user_id, session=session_ref(sid))
    if has_request_context():
        line["ip"] = request.remote_addr
        line["user_agent"] = request.user_agent.string[:USER_AGENT_MAX]
    line.update(fields)
    logger.info(line)
