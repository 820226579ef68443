"""Blueprint: /login/verify, the second step of a password sign-in with an authenticator app.

A correct password only records a pending step on the server (challenges.py, five minutes,
bound to this browser); nobody is signed in until a code from the app, or a recovery code, is
right. Codes are throttled with the password attempts of the same username and address.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import StringField

from .. import events, throttle
from ..db import get_db
from ..models import User
from ..sessions import policy as session_policy
from ..web.safe_redirect import next_or_default
from . import challenges, totp
from .notify import tell_user

bp = Blueprint("second_factor", __name__)

PURPOSE = "totp"
#: Sign-in methods, as sessions and the sign-in history name them.
WITH_AUTHENTICATOR = "password+totp"
WITH_RECOVERY_CODE = "recovery_code"
#: A correct password still waiting for its second factor (neither a success nor a failure).
PARTIAL = "partial"
WRONG_CODE = "That code is not right, or was used already."
EXPIRED = "Your sign-in took too long. Please sign in again."


class VerifyForm(FlaskForm):
    code = StringField("Code from your authenticator app")
    recovery_code = StringField("Or a recovery code")


def begin(user: User, remember_me: bool, next_url: str | None) -> ResponseReturnValue:
    """After a correct password: keep the step on the server and ask for the second factor."""
    throttle.record(get_db(), user.username, PARTIAL, "password", user)
    challenges.begin(PURPOSE, user_id=user.id, remember_me=remember_me, next_url=next_url)
    events.record("sign_in_second_factor", user_id=user.id)
    return redirect(url_for("second_factor.verify"), 303)


def _page(form: VerifyForm, status: int = 200, error: str | None = None) -> tuple[str, int]:
    return render_template("auth/verify.html", form=form, error=error), status


@bp.route("/login/verify", methods=["GET", "POST"])
def verify() -> ResponseReturnValue:
    pending = challenges.current(PURPOSE)
    db = get_db()
    user = db.get(User, pending.user_id) if pending and pending.user_id else None
    if user is None:
        flash(EXPIRED)
        return redirect(url_for("auth.login"), 303)
    form = VerifyForm()
    if request.method == "GET":
        return _page(form)
    if not form.validate_on_submit():
        return _page(form, 400)
    wait = throttle.reserve_sign_in(db, user.username, method=WITH_AUTHENTICATOR)
    if wait:
        events.record("sign_in_locked", retry_after=wait)
        error = f"Too many failed sign-ins. Wait {wait} seconds, then try again."
        html, _ = _page(form, 429, error)
        return html, 429, {"Retry-After": str(wait)}
    code, recovery = (form.code.data or "").strip(), (form.recovery_code.data or "").strip()
    if code:
        method, accepted = WITH_AUTHENTICATOR, totp.accept_code(db, user, code)
    else:
        method, accepted = (
            WITH_RECOVERY_CODE,
            bool(recovery) and totp.use_recovery_code(db, user, recovery),
        )
    if not accepted:
        throttle.record(db, user.username, "failure", method, user)
        events.record("sign_in_failed", user_id=user.id, method=method)
        if code and totp.is_replay(db, user, code):
            tell_user(user, "totp_code_reused")
        return _page(form, 401, WRONG_CODE)
    taken = challenges.take(PURPOSE)
    if taken is None:  # another request finished this sign-in first
        flash(EXPIRED)
        return redirect(url_for("auth.login"), 303)
    session_policy.start(user, remember_me=taken.remember_me, method=method)
    if method == WITH_RECOVERY_CODE:
        left = totp.recovery_codes_left(db, user)
        flash(f"You signed in with a recovery code; {left} left. Make new ones on Security.")
    return redirect(next_or_default(taken.next_url), 303)
