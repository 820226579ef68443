"""Blueprint: /preferences, the theme (light, dark or the system's), kept in a cookie.

A preference belongs to the browser, not to a session: it is applied to every page before it is
drawn (`<html data-theme>` in the server's HTML, so no flash of the wrong theme), for anonymous
visitors too, and it outlives sign-in and sign-out. A cookie holding one of three known words
needs no session-store entry and no signature: a forged value is refused like any other.
"""

from __future__ import annotations

from urllib.parse import quote_from_bytes

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from .web.safe_redirect import safe_next

bp = Blueprint("preferences", __name__)

THEMES = ("light", "dark", "system")
DEFAULT_THEME = "system"
#: How long the browser keeps the choice (a year; each change starts it again).
COOKIE_MAX_AGE = 365 * 24 * 3600


def cookie_name(app: Flask) -> str:
    return "__Host-theme" if app.config["SECURE_COOKIES"] else "theme"


def current_theme() -> str:
    """The theme this browser chose; the system's when none (or an unknown word) is set."""
    value = request.cookies.get(cookie_name(current_app))
    return value if value in THEMES else DEFAULT_THEME


@bp.get("/preferences")
def preferences() -> str:
    return render_template("preferences/preferences.html", themes=THEMES)


@bp.post("/preferences")
def save_preferences() -> ResponseReturnValue:
    """Set the theme: 303 back to the page the switch was on; 400 (nothing changed) for a
    theme outside the list."""
    theme = request.form.get("theme", "")
    if theme not in THEMES:
        error = f"Choose a theme among {', '.join(THEMES)}."
        html = render_template("preferences/preferences.html", themes=THEMES, error=error)
        return html, 400
    target = safe_next(request.form.get("next")) or url_for("preferences.preferences")
    response: Response = make_response(redirect(target, 303))
    response.set_cookie(
        cookie_name(current_app),
        theme,
        max_age=COOKIE_MAX_AGE,
        path="/",
        secure=current_app.config["SECURE_COOKIES"],
        httponly=True,
        samesite="Lax",
    )
    return response


def current_page() -> str:
    """Where the header's switch sends the browser back to: this page, its query string as
    sent (percent-encoded where it is not ASCII: a query may hold any byte)."""
    if not request.query_string:
        return request.path
    return f"{request.path}?{quote_from_bytes(request.query_string, safe='&=%+/?:@!$,;~*()')}"


@bp.app_context_processor
def theme_context() -> dict[str, object]:
    return {"theme": current_theme(), "themes": THEMES, "theme_return_to": current_page}
