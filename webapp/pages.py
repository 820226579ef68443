"""Blueprint: the HTML pages (home, profile) and the JSON sample API and health check."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, render_template
from flask_login import current_user, login_required

from . import db, mail
from .sessions import store as session_store
from .sessions.policy import read_only
from .widget import views as widget

logger = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    return render_template("pages/index.html")


@bp.get("/profile")
@login_required
def profile() -> str:
    return widget.render_protected_page("pages/profile.html", session_info=widget.current_json())


@bp.get("/api/hello")
@login_required
def hello() -> Response:
    return jsonify(message=f"Hello, {current_user.name}")


@bp.get("/api/email")
@read_only
def email() -> Response:
    """The seed's second example: who the session belongs to, in plain text. Read-only: it
    creates no session and writes nothing, whoever asks."""
    if not current_user.is_authenticated:
        text = "No session found"
    else:
        text = f"User email: {current_user.email or '(none)'}"
    return Response(text, mimetype="text/plain")


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the database and the session store answer; else 503 naming what failed.
    Mail is reported ("failing: N pending, last error ...") but never makes the answer 503:
    messages wait in the outbox and are retried, and taking the app out of a load balancer
    for a mail relay's outage would stop every sign-in too."""
    checks = {}
    for name, check in (
        ("database", db.ping),
        ("session_store", lambda: session_store.ping(current_app)),
    ):
        try:
            check()
            checks[name] = "ok"
        except Exception as error:
            logger.warning("health check %s failed: %s", name, error)
            checks[name] = f"unavailable: {type(error).__name__}"
    ok = all(value == "ok" for value in checks.values())
    checks["mail"] = mail.outbox(current_app).health()
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503
