"""A before_request guard, first of all: input that werkzeug or the database would turn into
a 500 (or a 503 "database not answering") is refused with a clear 4xx before anything reads it.
"""

from __future__ import annotations

import ipaddress
import logging

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream

from .errors import error_response

logger = logging.getLogger(__name__)

URLENCODED = "application/x-www-form-urlencoded"
#: Longest client address kept (the database column's size: an IPv6 address).
ADDRESS_MAX = 45


def refuse_hostile_request() -> tuple[Response | str, int] | None:
    """before_request, first of all: what werkzeug or the database would turn into a 500.

    A query string that is not UTF-8 makes werkzeug's request.args raise, so it is a 400 here,
    as is a NUL character anywhere in the request line or headers; a chunked form over the
    size limit is a 413.
    A client address that is not an IP address (X-Forwarded-For garbage through a proxy) is
    kept only as a short printable note, the size of the column it is stored in.
    """
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        return error_response(400, "The address (its query string) is not valid UTF-8.")
    if any("\x00" in value for value in request.environ.values() if isinstance(value, str)):
        # HTTP servers refuse these (gunicorn does); PostgreSQL cannot store them.
        return error_response(400, "The request holds a NUL character.")
    if _chunked_form_over_limit():
        raise RequestEntityTooLarge()
    address = request.remote_addr
    if address:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            logger.warning("client address is not an IP address: %r", address[:100])
            printable = "".join(c for c in address if c.isprintable())
            request.remote_addr = printable[:ADDRESS_MAX] or None
    return None


def _chunked_form_over_limit() -> bool:
    """Whether a form sent without Content-Length (chunked) filled MAX_CONTENT_LENGTH.

    werkzeug stops reading such a body at the limit and parses an urlencoded form from what it
    read, silently cut short; it raises 413 only for a body that declares its length.
    """
    if request.content_length is not None or request.mimetype != URLENCODED:
        return False
    request.form  # noqa: B018 (parsed here, within the limit, before anything uses it)
    stream = request.stream
    return isinstance(stream, LimitedStream) and stream.is_exhausted


def init_app(app: Flask) -> None:
    # First of every before_request hook: session_policy's may already store the address.
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_hostile_request)
