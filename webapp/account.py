"""Blueprint: the signed-in user's own account: active sessions, password, re-authentication."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial, wraps
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import Field

from . import events, notices, throttle, users
from .db import get_db
from .forms import ChangePasswordForm, PasswordConfirmForm, ProfileForm, SetPasswordForm
from .models import UserSession
from .passwords import passwords
from .sessions import index as session_index
from .sessions import policy as session_policy
from .sessions import remember
from .sessions.store import current_session
from .web.htmx import current_page, htmx_redirect, is_htmx
from .web.safe_redirect import next_or_default, safe_next
from .widget import views as widget

bp = Blueprint("account", __name__, url_prefix="/account")
SESSION_REF = re.compile(r"[0-9a-f]{16}")
WRONG_PASSWORD = "That password is not right."  # noqa: S105 (a message)
CONFIRMATIONS_LOCKED = "Too many wrong passwords. Wait {wait} seconds, then try again."

#: Renders a page again with the form, a status and an optional page-level error.
Render = Callable[[Any, int, str | None], tuple[str, int]]


def fresh_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Sensitive actions need the password entered within FRESH_TIMEOUT; otherwise ask for it
    and come back here (Flask-Login's fresh_login_required, on webapp's own clock)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if session_policy.is_fresh():
            return view(*args, **kwargs)
        page = current_page() if is_htmx() else safe_next(request.full_path.rstrip("?"))
        target = url_for("account.reauthenticate", next=page)
        if is_htmx():
            return htmx_redirect(target)
        return redirect(target, 303 if request.method == "POST" else 302)

    return wrapper


def refuse_unconfirmed(form: FlaskForm, field: Field, render: Render) -> ResponseReturnValue | None:
    """None when the form is valid and `field` holds the user's password; otherwise the answer:
    the form with its errors, 401 for a wrong password, 429 while the user's confirmations are
    locked. Only the user's own wrong confirmations count here: a sign-in lock that strangers
    caused never stops the user from ending their sessions or changing their password."""
    if not form.validate_on_submit():
        return render(form, 400, None)
    db, user = get_db(), current_user._get_current_object()
    wait = throttle.reserve_confirmation(db, user)
    if wait:
        events.record("confirmation_locked", user_id=user.id, retry_after=wait)
        html, _ = render(form, 429, CONFIRMATIONS_LOCKED.format(wait=wait))
        return html, 429, {"Retry-After": str(wait)}
    if not passwords().verify(user.password_hash, field.data):
        throttle.record(db, user.username, "failure", throttle.CONFIRM, user)
        events.record("sign_in_failed", user_id=user.id, method=throttle.CONFIRM)
        field.errors = [*field.errors, WRONG_PASSWORD]
        return render(form, 401, None)
    throttle.record(db, user.username, "success", throttle.CONFIRM, user)
    return None


# active sessions -------------------------------------------------------------------------


def sessions_page(
    form: Any = None, status: int = 200, error: str | None = None, *, failed: str | None = None
) -> tuple[str, int]:
    """The device list: this device first, then the most recently active. `failed` names the
    session whose form failed, so that its error shows at its own row."""
    this_device = session_index.sid_hash(current_session().sid)
    rows = sorted(
        session_index.live_sessions_of(current_user.id),
        key=lambda row: (row.sid_hash != this_device, -row.last_active_at.timestamp()),
    )
    html = widget.render_protected_page(
        "account/sessions.html",
        sessions=rows,
        this_device=this_device,
        remembered=remember.remembered_series(current_user.id),
        history=throttle.recent(get_db(), current_user.id),
        describe=session_index.describe_device,
        confirmed=session_policy.is_fresh(),
        form=form or PasswordConfirmForm(),
        error=error,
        failed=failed,
    )
    return html, status


def refuse_unless_confirmed(
    form: PasswordConfirmForm, render: Render
) -> ResponseReturnValue | None:
    """Ending sessions needs the password, or a recent one: a session within FRESH_TIMEOUT of
    its sign-in or of a confirmation on this page (one confirmation, then every row's button
    works without a password box). A password that is sent is checked all the same."""
    if session_policy.is_fresh() and not form.password.data:
        return None
    return refuse_unconfirmed(form, form.password, render)


@bp.get("/sessions")
@login_required
def sessions() -> ResponseReturnValue:
    return sessions_page()


@bp.post("/sessions/confirm")
@login_required
def confirm_sessions() -> ResponseReturnValue:
    """The sessions page's one password confirmation: it opens the fresh window
    (policy.reauthenticated), during which the page's buttons need no password."""
    form = PasswordConfirmForm()
    refusal = refuse_unconfirmed(form, form.password, partial(sessions_page, failed="confirm"))
    if refusal is not None:
        return refusal
    session_policy.reauthenticated(current_user)
    minutes = round(current_app.config["FRESH_TIMEOUT"] / 60)
    flash(f"Password confirmed. For the next {minutes} minutes you can end sessions directly.")
    return redirect(url_for("account.sessions"), 303)


@bp.post("/sessions/<ref>/revoke")
@login_required
def revoke(ref: str) -> ResponseReturnValue:
    """End one of the user's sessions (with the password, or within the fresh window); a
    remembered device is forgotten with it (its remember-me cookie no longer signs it back in)."""
    # References are 16 hex digits (session_index): anything else names no session, and must
    # not reach the database (PostgreSQL refuses a NUL character with an error).
    row = get_db().get(UserSession, ref) if SESSION_REF.fullmatch(ref) else None
    if row is None or row.user_id != current_user.id:
        abort(404)
    form = PasswordConfirmForm()
    refusal = refuse_unless_confirmed(form, partial(sessions_page, failed=ref))
    if refusal is not None:
        return refusal
    if row.sid_hash == session_index.sid_hash(current_session().sid):
        session_policy.end()  # ending this device's session is signing out
        return redirect(url_for("auth.login", reason="signed-out"), 303)
    session_index.revoke([row])
    events.record("session_revoked", user_id=current_user.id, revoked=ref)
    flash(f"The {session_index.describe_device(row.user_agent or '')} session has been ended.")
    return redirect(url_for("account.sessions"), 303)


@bp.post("/sessions/revoke-others")
@login_required
def revoke_others() -> ResponseReturnValue:
    """End every other session and remember-me token of the user."""
    form = PasswordConfirmForm()
    refusal = refuse_unless_confirmed(form, partial(sessions_page, failed="others"))
    if refusal is not None:
        return refusal
    ended = session_policy.end_other_sessions(current_user)
    events.record("sessions_revoked", user_id=current_user.id, count=ended)
    flash(f"Signed out of {ended} other session{'s' if ended != 1 else ''}.")
    return redirect(url_for("account.sessions"), 303)


# password --------------------------------------------------------------------------------


def password_page(form: Any = None, status: int = 200, error: str | None = None) -> tuple[str, int]:
    html = widget.render_protected_page(
        "account/password.html", form=form, error=error, first="current_password" not in form
    )
    return html, status


@bp.route("/password", methods=["GET", "POST"])
@login_required
@fresh_required
def password() -> ResponseReturnValue:
    """Change the password (or set a first one: an account made by an OpenID provider has
    none, and its fresh sign-in there stands for the current password): this session gets a
    new id, every other session ends."""
    first = not users.has_usable_password(current_user)
    form = SetPasswordForm() if first else ChangePasswordForm()
    if request.method == "GET":
        return password_page(form)
    if first:
        if not form.validate_on_submit():
            return password_page(form, 400)
    else:
        refusal = refuse_unconfirmed(form, form.current_password, password_page)
        if refusal is not None:
            return refusal
        if form.new_password.data == form.current_password.data:  # it is right: no hash
            return password_page(form, 400, users.ALREADY_YOUR_PASSWORD)
    try:
        users.set_password(get_db(), current_user, form.new_password.data)
    except users.AccountError as error:
        return password_page(form, 400, str(error))
    session_policy.end_other_sessions(current_user)
    session_policy.rotate()
    events.record("password_changed", user_id=current_user.id, sid=current_session().sid)
    notices.password_changed(current_user, "on its account page; other sessions were ended")
    changed = "set" if first else "changed"
    flash(f"Your password has been {changed} and your other sessions have been signed out.")
    return redirect(url_for("account.sessions"), 303)


# re-authentication -----------------------------------------------------------------------


def reauthenticate_page(
    form: Any = None, status: int = 200, error: str | None = None
) -> tuple[str, int]:
    return widget.render_protected_page(
        "account/reauthenticate.html",
        form=form,
        error=error,
        has_password=users.has_usable_password(current_user),
    ), status


@bp.route("/reauthenticate", methods=["GET", "POST"])
@login_required
def reauthenticate() -> ResponseReturnValue:
    """Enter the password again to become fresh, then carry on where the user was going."""
    form = PasswordConfirmForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
        return reauthenticate_page(form)
    refusal = refuse_unconfirmed(form, form.password, reauthenticate_page)
    if refusal is not None:
        return refusal
    session_policy.reauthenticated(current_user)
    return redirect(next_or_default(form.next.data), 303)


# profile (next-auth's update()) -------------------------------------------------------------


def profile_page(form: Any = None, status: int = 200, error: str | None = None) -> tuple[str, int]:
    html = widget.render_protected_page("account/profile.html", form=form, error=error)
    return html, status


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile() -> ResponseReturnValue:
    """Change name and email; every open tab's widget follows. A new email needs a fresh
    sign-in (it is where the account's mail goes) and takes effect once confirmed from the
    link mailed to it."""
    form = ProfileForm(obj=current_user if request.method == "GET" else None)
    if request.method == "GET":
        return profile_page(form)
    if not form.validate_on_submit():
        return profile_page(form, 400)
    email = (form.email.data or "").strip() or None
    if email != current_user.email and not session_policy.is_fresh():
        flash("Changing your email needs your password again; then submit the change again.")
        return redirect(url_for("account.reauthenticate", next=url_for("account.profile")), 303)
    try:
        users.update_profile(get_db(), current_user, form.name.data)
        if email is None and current_user.email is not None:
            users.set_email(get_db(), current_user, None, verified=False)
    except users.AccountError as error:
        return profile_page(form, 400, str(error))
    session_policy.cache_user(current_user)
    events.record("profile_changed", user_id=current_user.id, sid=current_session().sid)
    if email is not None and email != current_user.email:
        notices.send_verification(current_user, email)
        flash(f"We sent a link to {email}: your address changes when you open it.")
    flash("Your profile has been updated.")
    return redirect(url_for("account.profile"), 303)
