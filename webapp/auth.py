"""Blueprint: sign-in, sign-out and sign-up, and what a protected route answers a stranger."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user

from . import accounts, session_policy
from .db import get_db
from .errors import wants_json
from .extensions import login_manager
from .forms import LoginForm, LogoutForm, SignupForm
from .htmx import current_page, htmx_redirect, is_htmx, login_url
from .models import User
from .safe_redirect import next_or_default, safe_next

logger = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

LOGIN_FAILED = "Invalid username or password"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    try:
        return get_db().get(User, int(user_id))
    except (TypeError, ValueError):
        return None


@login_manager.unauthorized_handler
def unauthorized() -> ResponseReturnValue:
    """APIs get 401 JSON, htmx gets 401 + HX-Redirect, pages a redirect to the sign-in form."""
    if is_htmx():
        return htmx_redirect(login_url(current_page()))
    if wants_json():
        return jsonify(message="Not authenticated"), 401
    page = request.path + ("?" + request.query_string.decode() if request.query_string else "")
    return redirect(login_url(safe_next(page)))


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm()
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(next_or_default(request.args.get("next")), 303)
        form.next.data = safe_next(request.args.get("next")) or ""
        return render_template("auth/login.html", form=form)
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 400
    user = accounts.authenticate(get_db(), form.username.data, form.password.data)
    if user is None:
        logger.info("failed sign-in from %s", request.remote_addr)
        return render_template("auth/login.html", form=form, error=LOGIN_FAILED), 401
    session_policy.start(user, remember_me=form.remember.data)
    logger.info("user %s signed in from %s", user.id, request.remote_addr)
    return redirect(next_or_default(form.next.data), 303)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> ResponseReturnValue:
    if request.method == "POST" and current_user.is_authenticated:
        logger.info("user %s signed out", current_user.get_id())
        session_policy.end()
    if request.method == "POST" or not current_user.is_authenticated:
        return redirect(url_for("auth.login"), 303)
    return render_template("auth/logout.html", form=LogoutForm())


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> ResponseReturnValue:
    if not current_app.config["SIGNUP"]:
        abort(404)
    if current_user.is_authenticated:
        return redirect(url_for("pages.profile"), 303)
    form = SignupForm()
    if request.method == "GET":
        return render_template("auth/signup.html", form=form)
    if form.validate_on_submit():
        try:
            user = accounts.create_user(
                get_db(), form.username.data, form.password.data, form.name.data, form.email.data
            )
        except accounts.AccountError as error:
            form.username.errors = [*form.username.errors, str(error)]
        else:
            session_policy.start(user)
            logger.info("user %s signed up from %s", user.id, request.remote_addr)
            return redirect(url_for("pages.profile"), 303)
    return render_template("auth/signup.html", form=form), 400
