"""A before_request guard, first of all: input that werkzeug or the database would turn into
a 500 (or a 503 "database not answering") is refused with a clear 4xx before anything reads it;
so is a Host this site does not serve, and werkzeug's own redirects never name the Host.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from flask import Flask, Response, current_app, redirect, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge, SecurityError
from werkzeug.routing import RequestRedirect
from werkzeug.wsgi import LimitedStream, get_host

from ..errors import error_response

logger = logging.getLogger(__name__)

URLENCODED = "application/x-www-form-urlencoded"
#: Longest client address kept (the database column's size: an IPv6 address).
ADDRESS_MAX = 45
UNTRUSTED_HOST = "The Host header names a host this site does not serve."
#: What a query keeps unencoded in a redirect's Location (RFC 3986's query characters, and
#: "%" so that what was percent-encoded stays so).
QUERY_SAFE = "!$&'()*+,;=:@/?%"


def refuse_hostile_request() -> ResponseReturnValue | None:
    """before_request, first of all: what werkzeug or the database would turn into a 500.

    A query string that is not UTF-8 makes werkzeug's request.args raise, so it is a 400 here,
    as is a NUL character anywhere in the request line or headers; a chunked form over the
    size limit is a 413, and a form body that is not UTF-8 a 400 that says so.
    A client address that is not an IP address (X-Forwarded-For garbage through a proxy) is
    kept only as a short printable note, the size of the column it is stored in.
    A Host that is not in TRUSTED_HOSTS is a 400 before any other hook (a remember-me cookie
    would otherwise sign someone in), and a routing redirect is made relative.
    """
    if isinstance(request.routing_exception, SecurityError):
        return _refuse_untrusted_host()
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        return error_response(400, "The address (its query string) is not valid UTF-8.")
    if any("\x00" in value for value in request.environ.values() if isinstance(value, str)):
        # HTTP servers refuse these (gunicorn does); PostgreSQL cannot store them.
        return error_response(400, "The request holds a NUL character.")
    if request.mimetype == URLENCODED and (refusal := _refuse_urlencoded_body()):
        return refusal
    address = request.remote_addr
    if address:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            logger.warning("client address is not an IP address: %r", address[:100])
            printable = "".join(c for c in address if c.isprintable())
            request.remote_addr = printable[:ADDRESS_MAX] or None
    if isinstance(request.routing_exception, RequestRedirect):
        return _relative_redirect(request.routing_exception)
    return None


def host_trusted(environ: dict[str, Any], trusted_hosts: list[str]) -> bool:
    """Flask's TRUSTED_HOSTS check on a WSGI environ, for the poll fast path (before Flask)."""
    try:
        get_host(environ, trusted_hosts)
    except SecurityError:
        return False
    return True


def _refuse_untrusted_host() -> tuple[Response | str, int]:
    """Flask found the Host (after ProxyFix: X-Forwarded-Host) outside TRUSTED_HOSTS. The log
    says which setting to change: a new deployment's first request lands here."""
    host = request.environ.get("HTTP_HOST", "")
    logger.warning(
        "refused Host %r: not in WEBAPP_TRUSTED_HOSTS (%s); add the names this site is "
        "reached by to that setting",
        host[:100],
        ",".join(current_app.config["TRUSTED_HOSTS"]),
    )
    return error_response(400, UNTRUSTED_HOST)


def _relative_redirect(routing: RequestRedirect) -> ResponseReturnValue:
    """Werkzeug's own redirects (merge slashes: /a//b to /a/b; a missing trailing slash) put
    the request's Host and its raw query into an absolute Location (a raw newline in the
    query made it a 500): the same target as a path on this site, the query percent-encoded."""
    path = urlsplit(routing.new_url).path
    if any(ord(c) < 32 or ord(c) == 127 for c in unquote(path)):  # a browser would drop them
        return error_response(404, "There is no page at this address.")
    query = quote(request.query_string, safe=QUERY_SAFE)
    return redirect(f"{path}?{query}" if query else path, routing.code)


def _refuse_urlencoded_body() -> tuple[Response | str, int] | None:
    """What werkzeug would otherwise accept silently in a urlencoded form:

    - sent without Content-Length (chunked), a body that fills MAX_CONTENT_LENGTH: werkzeug
      stops reading at the limit and parses what it read, cut short (it raises 413 only for a
      body that declares its length);
    - a body that is not UTF-8: werkzeug drops the whole form, and the person would be told
      that the CSRF token is missing.
    The body is read here, within the limit; request.form parses this same copy later.
    """
    body = request.get_data(cache=True)
    stream = request.stream
    if request.content_length is None and isinstance(stream, LimitedStream) and stream.is_exhausted:
        raise RequestEntityTooLarge()
    try:
        body.decode()
    except UnicodeDecodeError:
        return error_response(
            400, "The form data is not valid UTF-8 (send it percent-encoded, as browsers do)."
        )
    return None


def init_app(app: Flask) -> None:
    # First of every before_request hook: session_policy's may already store the address.
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_hostile_request)
