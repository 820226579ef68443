"""webapp: next-auth's session model for Flask and htmx. create_app() builds the application."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as settings
from . import events

PACKAGE = os.path.dirname(os.path.abspath(__file__))

__all__ = ["create_app"]


def data_folder(name: str) -> str:
    """templates/ or static/: inside the package when installed from the wheel (setup.cfg
    maps them there), else at the top of the checkout, beside the package."""
    inside = os.path.join(PACKAGE, name)
    return inside if os.path.isdir(inside) else os.path.join(os.path.dirname(PACKAGE), name)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: the instance folder (checked before the config.py it may hold runs),
    defaults, then instance/config.py, then WEBAPP_* variables (or the test mapping instead of
    both), then extensions and blueprints."""
    from .instance import ensure_private_folder, load_or_create_secret_key

    path = (test_config or {}).get("INSTANCE_PATH") or settings.instance_path()
    app = Flask(
        __name__,
        instance_path=path,
        instance_relative_config=True,
        template_folder=data_folder("templates"),
        static_folder=data_folder("static"),
    )
    if app.logger.level == logging.NOTSET:  # session events are INFO: show them by default
        app.logger.setLevel(logging.INFO)
    events.init_app(app)
    ensure_private_folder(app.instance_path)  # before running the config.py it may hold
    app.config.from_mapping(settings.defaults())
    sources: dict[str, str] = {}
    if test_config is None:
        given, sources = settings.load(app.instance_path)
        app.config.from_mapping(given)
    else:
        app.config.from_mapping(test_config)
    settings.validate(app.config, sources)

    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = load_or_create_secret_key(app.instance_path)
    _configure_flask(app)

    from . import cli, db, errors, mail, passwords
    from .extensions import csrf, login_manager
    from .sessions import backend as session_backend
    from .sessions import policy as session_policy
    from .web import request_guard, security_headers, static_files
    from .widget import fast_path
    from .widget import views as widget

    db.init_app(app)
    mail.init_app(app)
    passwords.init_app(app)
    session_backend.init_app(app)
    session_policy.init_app(app)
    login_manager.init_app(app)
    csrf.init_app(app)
    errors.init_app(app)
    request_guard.init_app(app)
    security_headers.init_app(app)
    static_files.init_app(app)
    cli.init_app(app)

    from . import account, auth, basket, pages, preferences
    from .signin import oidc_views, passkey_views, recovery, security, verify

    app.register_blueprint(auth.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(verify.bp)
    app.register_blueprint(security.bp)
    app.register_blueprint(passkey_views.bp)
    app.register_blueprint(preferences.bp)
    app.register_blueprint(basket.bp)
    app.register_blueprint(oidc_views.bp)
    app.register_blueprint(recovery.bp)
    app.register_blueprint(widget.bp)
    widget.init_app(app)  # after the blueprints: it resolves their URLs once
    fast_path.init_app(app)
    if app.config["PROXY_HOPS"]:
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    return app


def _configure_flask(app: Flask) -> None:
    """Derive Flask's and the extensions' own settings from webapp's."""
    secure = app.config["SECURE_COOKIES"]
    app.config.update(
        SESSION_COOKIE_NAME="__Host-session" if secure else "session",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
        # Flask's default rewrites the session and re-sends its cookie on every request;
        # webapp writes only when the session changes (session_policy throttles activity).
        SESSION_REFRESH_EACH_REQUEST=False,
        # Tie CSRF tokens to the session rather than to an hour: a page left open still posts.
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_HEADERS=["X-CSRFToken", "X-CSRF-Token"],
        # Flask-WTF's HTTPS check wants a Referer; web/same_origin.py accepts Origin as well.
        WTF_CSRF_SSL_STRICT=False,
        # Flask's Host check (a 400 that web/request_guard.py explains), on the list webapp's
        # setting names; it applies to the host ProxyFix takes from X-Forwarded-Host.
        TRUSTED_HOSTS=settings.trusted_hosts(app.config["TRUSTED_HOSTS"]),
        # One size limit, the one the 413 names: werkzeug's own for a form field (500 KB)
        # would refuse a smaller request than MAX_CONTENT_LENGTH says.
        MAX_FORM_MEMORY_SIZE=app.config["MAX_CONTENT_LENGTH"],
    )
