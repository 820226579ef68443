"""Error answers: JSON for scripts, a page for people, never a bare 500 for bad input."""

from __future__ import annotations

import logging

from flask import (
    Flask,
    Response,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from .session_store import STORE_OUTAGES

#: Failures of a server webapp depends on: 503, never a 500, and no worker dies.
OUTAGES: tuple[type[Exception], ...] = (*STORE_OUTAGES, OperationalError, DBAPIError)

logger = logging.getLogger(__name__)


def wants_json() -> bool:
    """Scripts (API paths, or an Accept that prefers JSON) get JSON; browsers get HTML."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and (
        request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def error_response(status: int, message: str) -> tuple[Response | str, int]:
    if wants_json():
        return jsonify(error=message), status
    return render_template("errors/error.html", status=status, message=message), status


def unavailable_response(message: str) -> Response:
    """503 that needs neither the database nor the session store to render (rendered by
    Jinja directly: Flask's context processors would load the signed-in user)."""
    if wants_json():
        response = jsonify(error=message)
    else:
        template = current_app.jinja_env.get_template("errors/unavailable.html")
        response = make_response(template.render(message=message))
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


MESSAGES = {
    400: "The request was not valid.",
    404: "There is no page at this address.",
    405: "This address does not accept that method.",
    413: "The request is too large (the limit is 1 MiB).",
    429: "Too many requests; wait a moment and try again.",
    500: "Something went wrong on our side; it has been logged.",
    503: "The service is temporarily unavailable; try again shortly.",
}


def handle_http_error(error: HTTPException) -> tuple[Response | str, int] | HTTPException:
    status = error.code or 500
    if status < 400:
        return error
    message = MESSAGES.get(status) or error.description or "Request failed."
    return error_response(status, message)


def handle_csrf_error(error: CSRFError) -> tuple[Response | str, int]:
    logger.info("CSRF check failed: %s", error.description)
    return error_response(
        400,
        "The form was missing its security token or it did not match your session "
        f"({error.description}). Reload the page and try again.",
    )


def handle_unexpected(error: Exception) -> Response | tuple[Response | str, int]:
    cause = getattr(error, "original_exception", None) or error
    if isinstance(cause, OUTAGES):
        logger.error("service unavailable: %s: %s", type(cause).__name__, cause)
        what = "session store" if isinstance(cause, STORE_OUTAGES) else "database"
        return unavailable_response(f"The {what} is not answering; try again in a moment.")
    logger.exception("unhandled error", exc_info=error)
    return error_response(500, MESSAGES[500])


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(InternalServerError, handle_unexpected)
    app.register_error_handler(Exception, handle_unexpected)
