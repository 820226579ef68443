"""Blueprint: GET /session, the client's one source of truth, and GET /csrf."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, make_response
from flask_wtf.csrf import generate_csrf

from . import widget
from .htmx import is_htmx
from .session_policy import read_only

bp = Blueprint("session_api", __name__)


@bp.get("/session")
@read_only
def session_state() -> Response:
    """JSON like next-auth's /api/auth/session, or the widget fragment for htmx; never writes."""
    if is_htmx():
        response = make_response(widget.render_fragment())
    else:
        response = jsonify(widget.session_json())
    response.headers["Cache-Control"] = "private, no-store"
    response.vary.update(("Cookie", "HX-Request", "Accept"))
    return response


@bp.get("/csrf")
def csrf_token() -> Response:
    response = jsonify(csrfToken=generate_csrf())
    response.headers["Cache-Control"] = "private, no-store"
    return response
