"""Blueprint: sign-in, sign-out and sign-up, and what a protected route answers a stranger."""

from __future__ import annotations

import math

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user

from . import events, throttle, users
from .db import get_db
from .errors import wants_json
from .extensions import login_manager
from .forms import LoginForm, LogoutForm, SignupForm
from .models import User
from .sessions import policy as session_policy
from .sessions.store import session_interface
from .signin import oidc_views, totp
from .signin import verify as second_factor
from .web.htmx import current_page, htmx_redirect, is_htmx, login_url
from .web.safe_redirect import next_or_default, safe_next

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "Invalid username or password"
#: Why someone is on the sign-in page (`?reason=`, set by sign-out and by static/js/session.js):
#: a fixed list, so that no text from a link ever reaches the page.
SIGN_IN_REASONS = {
    "signed-out": "You are signed out.",
    "expired": "Your session expired. Sign in again to continue.",
    "revoked": "Your session was ended from another device. Sign in again to continue.",
    "signout": "You signed out in another tab.",
}


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
        reason = SIGN_IN_REASONS.get(request.args.get("reason", ""))
        return render_template("auth/login.html", form=form, reason=reason)
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 400
    db, typed = get_db(), form.username.data
    # Attempts count under the account's username whether it was typed or its verified email
    # (else alternating the two would double the tries); unknown names count as typed.
    named = users.find_login(db, typed)
    username = named.username if named is not None else typed
    wait = throttle.reserve_sign_in(db, username)
    if wait:
        html = render_template("auth/login.html", form=form, error=locked_out(wait))
        return html, 429, {"Retry-After": str(wait)}
    user = users.authenticate(db, typed, form.password.data)
    if user is None:
        failed_attempt(username, "password", named)
        return render_template("auth/login.html", form=form, error=LOGIN_FAILED), 401
    if totp.is_enabled(db, user):  # the password was right; the authenticator app comes next
        return second_factor.begin(user, form.remember.data, safe_next(form.next.data))
    session_policy.start(user, remember_me=form.remember.data)
    return redirect(next_or_default(form.next.data), 303)


def failed_attempt(username: str, method: str, user: User | None) -> None:
    """Count a wrong password for `username` (existing or not: `user` when it exists) and
    log it."""
    db = get_db()
    throttle.record(db, username, "failure", method, user)
    events.record("sign_in_failed", user_id=user.id if user else None, method=method)


def locked_out(wait: int) -> str:
    """Log a refused attempt on a locked username or address; the message for its 429 answer,
    the same for every username, existing or not."""
    events.record("sign_in_locked", retry_after=wait)
    return f"Too many failed sign-ins. Wait {wait} seconds, then try again."


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> ResponseReturnValue:
    if request.method == "POST":
        target, provider_logout = url_for("auth.login", reason="signed-out"), None
        signed_in = current_user.is_authenticated
        if signed_in:
            # A provider's session ends too when it offers that (RP-initiated logout).
            provider_logout = oidc_views.provider_logout_url()
            session_policy.end()  # its session and remember-me cookies go with it
        if provider_logout and is_htmx():  # a boosted form cannot follow a 303 to another site
            response = htmx_redirect(provider_logout, 200)
        else:
            response = make_response(redirect(provider_logout or target, 303))
        # This site's own cookies only, by name: Clear-Site-Data's "cookies" would delete the
        # cookies of every site under the same registrable domain. Signed out already, there
        # is nothing to end: the anonymous CSRF cookie stays, or another tab's open form (or
        # its passkey request) would fail its CSRF check.
        csrf_cookie = session_interface(current_app).csrf_cookie
        if signed_in and csrf_cookie.name in request.cookies:
            csrf_cookie.delete(response)
        # The pages a browser kept, and what scripts stored (a secure context only).
        response.headers["Clear-Site-Data"] = '"cache", "storage"'
        return response
    if not current_user.is_authenticated:
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
    if not form.validate_on_submit():
        return render_template("auth/signup.html", form=form), 400
    db, username = get_db(), form.username.data
    wait = throttle.reserve_sign_up(db, username, current_app.config["SIGNUP_LIMIT"])
    if wait:
        events.record("sign_up_limited", retry_after=wait)
        minutes = math.ceil(wait / 60)
        error = (
            "Too many accounts were created from your address. "
            f"Wait {minutes} minute{'s' if minutes != 1 else ''}, then try again."
        )
        html = render_template("auth/signup.html", form=form, error=error)
        return html, 429, {"Retry-After": str(wait)}
    try:
        user = users.create_user(db, username, form.password.data, form.name.data, form.email.data)
    except users.AccountError as error:
        throttle.record(db, username, "refused", throttle.SIGN_UP, None)
        form.username.errors = [*form.username.errors, str(error)]
        return render_template("auth/signup.html", form=form), 400
    session_policy.start(user, method=throttle.SIGN_UP)
    return redirect(url_for("pages.profile"), 303)
