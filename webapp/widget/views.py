"""Blueprint: GET /session, the client's one source of truth; POST /session/keepalive; /csrf;
and the widget as Flask's pages render it (the current request's session)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

from .. import clock
from ..sessions import policy as session_policy
from ..sessions.policy import read_only
from ..web.htmx import current_page, htmx_redirect, is_boosted, login_url, wants_fragment
from ..web.safe_redirect import next_or_default
from . import state as widget
from .state import REQUIRED_HEADER, STATE_HEADER, VARY

bp = Blueprint("widget", __name__)


@bp.get("/session")
@read_only
def session_state() -> Response:
    """JSON like next-auth's /api/auth/session, or for htmx the widget: 204 when the state
    the widget shows is unchanged. Never writes."""
    response = _widget_answer() if wants_fragment() else jsonify(current_json())
    response.headers["Cache-Control"] = "private, no-store"
    response.vary.update(VARY)
    return response


def _widget_answer() -> Response:
    state = current_state()
    if state["status"] == widget.UNAUTHENTICATED and request.headers.get(REQUIRED_HEADER):
        return htmx_redirect(login_url(current_page()), status=200)
    if request.headers.get(STATE_HEADER) == widget.state_token(state):
        return Response(status=204)
    return make_response(render(state=state))


@bp.post("/session/keepalive")
@login_required
def keepalive() -> ResponseReturnValue:
    """ "Stay signed in": besides real requests, the only thing that extends a session."""
    session_policy.extend()
    if wants_fragment():
        return render()
    return make_response("", 303, {"Location": next_or_default(request.form.get("next"))})


@bp.get("/csrf")
def csrf_token() -> Response:
    response = jsonify(csrfToken=generate_csrf())
    response.headers["Cache-Control"] = "private, no-store"
    return response


def current_user_data() -> dict[str, Any] | None:
    """The signed-in user as /session shows it: from the session's cache while it is younger
    than the touch interval, else from the database (one query)."""
    if "_user_id" not in session:
        return None
    cached = session_policy.cached_user(session, clock.now(), current_app.config)
    if cached is not None:
        return cached
    return current_user.as_session_user() if current_user.is_authenticated else None


def current_state() -> dict[str, Any]:
    return widget.visible_state(session, current_user_data(), clock.now(), current_app.config)


def current_json() -> dict[str, Any]:
    return widget.session_json(session, current_user_data(), current_app.config)


def render(status: str | None = None, state: Mapping[str, Any] | None = None) -> str:
    """The widget for the current session. `status` overrides the status shown: "loading"
    for a public page's first render."""
    state = state or current_state()
    expires = session_policy.expires_at() if state["status"] == widget.AUTHENTICATED else None
    return widget.widget_html(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        state,
        status=status,
        expires_in=int(expires - clock.now()) if expires is not None else None,
        # Signed-in sessions got their token at sign-in: this never writes on a poll.
        csrf=generate_csrf() if state["status"] == widget.AUTHENTICATED else "",
        page=request.path,
    )


def render_for_page(status: str | None = None) -> Markup:
    """The widget as a page shows it: the status the page knows (protected pages), the known
    state on htmx-boosted navigation (the widget stays alive), else "loading"."""
    if status is None and not is_boosted():
        status = widget.LOADING
    return Markup(render(status))  # noqa: S704 (HTML rendered by Jinja with autoescape)


def render_protected_page(template: str, **context: Any) -> str:
    """A page that needs a signed-in user: it shows the known state at once and, if the session
    ends while it is open, the widget sends the person to sign in (useSession's `required`)."""
    return render_template(template, widget_status=widget.AUTHENTICATED, **context)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["session_widget"] = render_for_page
    app.jinja_env.filters["iso_utc"] = widget.iso_utc
    app.jinja_env.filters["utc_text"] = widget.utc_text
    # On a host TRUSTED_HOSTS lists: Flask builds no URL for a request to any other.
    with app.test_request_context(base_url="http://" + app.config["TRUSTED_HOSTS"][0].lstrip(".")):
        app.extensions["webapp.widget_urls"] = {
            name: url_for(endpoint)
            for name, endpoint in (
                ("session", "widget.session_state"),
                ("keepalive", "widget.keepalive"),
                ("csrf", "widget.csrf_token"),
                ("login", "auth.login"),
                ("logout", "auth.logout"),
            )
        }
