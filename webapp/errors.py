"""Error answers: JSON for scripts, a page for people, never a bare 500 for bad input."""

from __future__ import annotations

import logging

from flask import (
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    render_template,
    request,
    session,
)
from flask.globals import request_ctx
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from werkzeug.exceptions import BadHost, HTTPException, InternalServerError

from .web.same_origin import CrossSiteRequest


class StoreWriteError(Exception):
    """The file store could not write or delete a session."""


#: Errors that mean "the session store is down": the app answers 503 and recovers by itself.
STORE_OUTAGES: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    StoreWriteError,
)
#: Failures of a server webapp depends on: 503, never a 500, and no worker dies.
OUTAGES: tuple[type[Exception], ...] = (*STORE_OUTAGES, OperationalError, DBAPIError)
OUTAGE_MESSAGE = "The session store is not answering; try again in a moment."
SAVE_FAILED_MESSAGE = "The server could not store your session (its storage failed); try again."
#: Endpoints that work without a session: static files, and the health check naming outages.
OUTAGE_EXEMPT = frozenset({"static", "pages.healthz"})

logger = logging.getLogger(__name__)


def wants_json() -> bool:
    """Scripts (API paths, or an Accept that prefers JSON) get JSON; browsers get HTML."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and (
        request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


#: The error page for a request whose Host header werkzeug refused (BadHost): no URL can be
#: built for it, so no template that links anywhere (base.html) can render.
BARE_PAGE = (
    '<!doctype html>\n<html lang="en">\n'
    '<head><meta charset="utf-8"><title>{status}</title></head>\n'
    '<body><main><h1>{status}</h1><p class="error-message">{message}</p></main></body>\n</html>\n'
)


def error_response(status: int, message: str) -> tuple[Response | str, int]:
    if wants_json():
        return jsonify(error=message), status
    if request_ctx.url_adapter is None:
        return BARE_PAGE.format(status=status, message=escape(message)), status
    return render_template("errors/error.html", status=status, message=message), status


def unavailable_response(message: str) -> Response:
    """503 that needs neither the database nor the session store to render (rendered by
    Jinja directly: Flask's context processors would load the signed-in user)."""
    if wants_json():
        response = jsonify(error=message)
    elif request_ctx.url_adapter is None:
        response = make_response(BARE_PAGE.format(status=503, message=escape(message)))
    else:
        template = current_app.jinja_env.get_template("errors/unavailable.html")
        response = make_response(template.render(message=message))
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


def outage_response(response: Response, message: str | None = None) -> None:
    """Turn a response into the 503 page or JSON error (used after the view has answered,
    where Flask's error handlers cannot run); nothing of the original answer survives."""
    answer = unavailable_response(message or OUTAGE_MESSAGE)
    response.status_code = 503
    response.headers.pop("Location", None)
    del response.headers["Set-Cookie"]  # e.g. no remember-me cookie for a sign-in that failed
    response.headers["Retry-After"] = answer.headers["Retry-After"]
    response.headers["Content-Type"] = answer.headers["Content-Type"]
    response.set_data(answer.get_data())


def refuse_during_outage() -> Response | None:
    """before_request: a request whose session could not be opened gets 503."""
    if getattr(session, "outage", False) and request.endpoint not in OUTAGE_EXEMPT:
        return unavailable_response(OUTAGE_MESSAGE)
    return None


MESSAGES = {
    400: "The request was not valid.",
    404: "There is no page at this address.",
    405: "This address does not accept that method.",
    413: "The request is too large (the limit is {limit}).",
    429: "Too many requests; wait a moment and try again.",
    500: "Something went wrong on our side; it has been logged.",
    503: "The service is temporarily unavailable; try again shortly.",
}


def handle_http_error(error: HTTPException) -> tuple[Response | str, int] | HTTPException:
    status = error.code or 500
    if status < 400:
        return error
    message = MESSAGES.get(status) or error.description or "Request failed."
    if isinstance(error, BadHost):
        message = "The Host header does not name a valid host."
    if status == 413:
        message = _too_large_message(message)
    return error_response(status, message)


def _too_large_message(message: str) -> str:
    """413 has two causes: the body's size, or (in a multipart body within that size) the
    number of fields, which werkzeug limits to MAX_FORM_PARTS."""
    config = current_app.config
    limit = config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if request.mimetype == "multipart/form-data" and length is not None and length <= limit:
        return f"The form has too many fields (the limit is {config['MAX_FORM_PARTS']:,})."
    return message.format(limit=size_text(limit))


def size_text(size: int) -> str:
    """A byte count as people read it: 1 MiB, 512 KiB, 1000 bytes."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


#: Answers to input that reaches the database but cannot be stored (a NUL character, a value
#: longer than its column): the forms refuse such values first, this is the safety net.
UNSTORABLE = (
    "The request holds a value that cannot be stored (a control character, or a value too long)."
)


def handle_csrf_error(error: CSRFError) -> tuple[Response | str, int]:
    logger.info("CSRF check failed: %s", error.description)
    if isinstance(error, CrossSiteRequest):  # the token was right: say what was not
        return error_response(400, error.description)
    return error_response(
        400,
        "The form was missing its security token or it did not match your session "
        f"({error.description}). Reload the page and try again.",
    )


def handle_unexpected(error: Exception) -> Response | tuple[Response | str, int]:
    cause = getattr(error, "original_exception", None) or error
    if isinstance(cause, DataError):  # the database refused a value: bad input, not an outage
        logger.warning("database refused a value: %s", str(cause).splitlines()[0])
        if "db" in g:  # the failed statement spoilt the transaction the error page may read
            g.db.rollback()
        return error_response(400, UNSTORABLE)
    if isinstance(cause, OUTAGES):
        logger.error("service unavailable: %s: %s", type(cause).__name__, cause)
        if isinstance(cause, StoreWriteError):  # the disk, not a server that may come back
            return unavailable_response(SAVE_FAILED_MESSAGE)
        what = "session store" if isinstance(cause, STORE_OUTAGES) else "database"
        return unavailable_response(f"The {what} is not answering; try again in a moment.")
    logger.exception("unhandled error", exc_info=error)
    return error_response(500, MESSAGES[500])


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(InternalServerError, handle_unexpected)
    app.register_error_handler(Exception, handle_unexpected)
