"""Blueprint: GET /session, the client's one source of truth; POST /session/keepalive; /csrf."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, make_response, request
from flask.typing import ResponseReturnValue
from flask_login import login_required
from flask_wtf.csrf import generate_csrf

from . import session_policy, widget
from .htmx import current_page, htmx_redirect, login_url, wants_fragment
from .safe_redirect import next_or_default
from .session_policy import read_only

bp = Blueprint("session_api", __name__)

#: The widget sends the state token it shows; the same token back means "nothing changed".
STATE_HEADER = "X-Session-State"
#: Sent by the widget on pages that need a signed-in user (useSession({required: true})).
REQUIRED_HEADER = "X-Session-Required"


@bp.get("/session")
@read_only
def session_state() -> Response:
    """JSON like next-auth's /api/auth/session, or for htmx the widget: 204 when the state
    the widget shows is unchanged. Never writes."""
    response = _widget_answer() if wants_fragment() else jsonify(widget.current_json())
    response.headers["Cache-Control"] = "private, no-store"
    response.vary.update(("Cookie", "HX-Request", "Accept", STATE_HEADER, REQUIRED_HEADER))
    return response


def _widget_answer() -> Response:
    state = widget.current_state()
    if state["status"] == widget.UNAUTHENTICATED and request.headers.get(REQUIRED_HEADER):
        return htmx_redirect(login_url(current_page()), status=200)
    if request.headers.get(STATE_HEADER) == widget.state_token(state):
        return Response(status=204)
    return make_response(widget.render(state=state))


@bp.post("/session/keepalive")
@login_required
def keepalive() -> ResponseReturnValue:
    """ "Stay signed in": besides real requests, the only thing that extends a session."""
    session_policy.extend()
    if wants_fragment():
        return widget.render()
    return make_response("", 303, {"Location": next_or_default(request.form.get("next"))})


@bp.get("/csrf")
def csrf_token() -> Response:
    response = jsonify(csrfToken=generate_csrf())
    response.headers["Cache-Control"] = "private, no-store"
    return response
