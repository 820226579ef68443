"""Blueprint: the ways back in, and the pages of the links mail carries: password reset,
email verification, and ending a session a "was this you?" notice names.

Links never act on GET (mail scanners follow links): GET shows a button, POST acts. A used,
expired or unknown link gets 400 and a page that offers a new one.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired

from .. import clock, events, mail, notices, users
from ..db import get_db
from ..errors import error_response, wants_json
from ..forms import PASSWORD_LENGTH, _at_most, _printable
from ..mail_tokens import (
    NOTICE,
    RESET,
    VERIFY,
    digest,
    find_token,
    issue,
    password_fingerprint,
    retire,
    use,
)
from ..models import MailRequest, RememberToken, UserSession
from ..passwords import policy_error
from ..sessions import index as session_index
from ..sessions import policy as session_policy

bp = Blueprint("recovery", __name__)

#: Reset requests counted per REQUEST_WINDOW: per address typed, and per client address.
REQUEST_WINDOW = timedelta(hours=1)
RESETS_PER_ADDRESS = 3
RESETS_PER_CLIENT = 10


class ForgotForm(FlaskForm):
    email = StringField(
        "Email",
        validators=[
            DataRequired("Enter your email."),
            _at_most(users.EMAIL_MAX, "Email"),
            _printable("Email"),
        ],
    )


class ResetForm(FlaskForm):
    new_password = PasswordField(
        "New password", validators=[InputRequired("Choose a password."), PASSWORD_LENGTH]
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[
            InputRequired("Repeat the password."),
            PASSWORD_LENGTH,
            EqualTo("new_password", "Passwords differ."),
        ],
    )


class ConfirmForm(FlaskForm):
    """Only the CSRF token: a link acts only when its page's button is pressed."""


DEAD_LINK = "This link has expired, was already used, or is not one we sent."


def dead_link(kind: str) -> ResponseReturnValue:
    """400: the link is used, expired or unknown; the page offers a new one (a script gets
    the message as JSON)."""
    if wants_json():
        return error_response(400, DEAD_LINK)
    return render_template("auth/dead_link.html", kind=kind, message=DEAD_LINK), 400


# password reset -------------------------------------------------------------------------------


def _request_wait(db: Session, address_hash: str) -> int:
    """Seconds until this address and client may ask again (0: now), counting this request
    once it is let through."""
    since = clock.utcnow() - REQUEST_WINDOW
    limits = (
        (MailRequest.address_hash == address_hash, RESETS_PER_ADDRESS),
        (MailRequest.ip == request.remote_addr, RESETS_PER_CLIENT),
    )
    wait = 0
    for key, limit in limits:
        count, first = db.execute(
            select(func.count(), func.min(MailRequest.at)).where(
                MailRequest.purpose == RESET, MailRequest.at > since, key
            )
        ).one()
        if count >= limit:
            remaining = (clock.as_utc(first) - since).total_seconds()
            wait = max(wait, max(1, int(remaining) + 1))
    if not wait:
        db.execute(delete(MailRequest).where(MailRequest.at <= since))
        db.add(
            MailRequest(
                purpose=RESET,
                address_hash=address_hash,
                ip=request.remote_addr,
                at=clock.utcnow(),
            )
        )
        db.commit()
    return wait


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot() -> ResponseReturnValue:
    """Ask for a reset link. The answer is the same page, in the same time, whether or not an
    account has the address: the lookup and the mail happen after it (mail.later)."""
    form = ForgotForm()
    if request.method == "GET":
        return render_template("auth/forgot.html", form=form)
    if not form.validate_on_submit():
        return render_template("auth/forgot.html", form=form), 400
    email = form.email.data.strip()
    wait = _request_wait(get_db(), digest("address:" + email.lower()))
    if wait:
        events.record("password_reset_limited", retry_after=wait)
        minutes = -(-wait // 60)
        error = f"Too many requests. Wait {minutes} minute{'s' if minutes != 1 else ''}."
        html = render_template("auth/forgot.html", form=form, error=error)
        return html, 429, {"Retry-After": str(wait)}
    mail.later(current_app._get_current_object(), send_reset_links, email)  # type: ignore[attr-defined]
    return render_template("auth/forgot.html", form=form, sent=True)


def send_reset_links(email: str) -> None:
    """Mail a reset link to each account the address reaches (none: nothing happens)."""
    db = get_db()
    minutes = current_app.config["RESET_TIMEOUT"] // 60
    for user in users.find_by_email(db, email):
        lifetime = timedelta(seconds=current_app.config["RESET_TIMEOUT"])
        token = issue(db, user, RESET, lifetime, bound_to=password_fingerprint(user))
        events.record("password_reset_requested", user_id=user.id)
        mail.send(
            mail.compose(
                user.email or email,
                "Reset your password",
                [
                    f"Someone (we hope you) asked to reset the password of {user.username}.",
                    f"To choose a new password, open this link within {minutes} minutes. "
                    "It works once. If you did not ask, ignore this mail: "
                    "your password stays as it is.",
                ],
                mail.link("recovery.reset", token=token),
            )
        )


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> ResponseReturnValue:
    """Choose a new password through a reset link: every session and remembered device of
    the user ends, and the user is told by mail."""
    db = get_db()
    found = find_token(db, token, RESET)
    if found is None:
        return dead_link(RESET)
    row, user = found
    form = ResetForm()
    if request.method == "GET":
        return render_template("auth/reset.html", form=form, user=user)
    if not form.validate_on_submit():
        return render_template("auth/reset.html", form=form, user=user), 400
    error = policy_error(form.new_password.data, user.username)
    if error:
        form.new_password.errors = [*form.new_password.errors, error]
        return render_template("auth/reset.html", form=form, user=user), 400
    if not use(db, row):
        return dead_link(RESET)
    users.set_password(db, user, form.new_password.data)
    retire(db, user, RESET)
    ended = session_policy.end_all_sessions(user)
    events.record("password_reset", user_id=user.id, sessions_ended=ended)
    notices.password_changed(user, "through a reset link, and every session was signed out")
    flash("Your password has been changed. Sign in with your new password.")
    return redirect(url_for("auth.login"), 303)


# verified email ---


@bp.route("/account/email/verify/<token>", methods=["GET", "POST"])
def verify_email(token: str) -> ResponseReturnValue:
    """Confirm the address a verification mail went to: it becomes the account's, verified,
    and a previous address is told."""
    db = get_db()
    found = find_token(db, token, VERIFY)
    if found is None:
        return dead_link(VERIFY)
    row, user = found
    form = ConfirmForm()
    if request.method == "GET":
        return render_template("account/verify_email.html", form=form, email=row.email)
    if not form.validate_on_submit():
        return render_template("account/verify_email.html", form=form, email=row.email), 400
    if not use(db, row):
        return dead_link(VERIFY)
    old, new = user.email, row.email or ""
    try:
        users.set_email(db, user, new, verified=True)
    except users.AccountError as error:
        html = render_template("account/verify_email.html", form=None, email=new, error=error)
        return html, 400
    events.record("email_verified", user_id=user.id)
    if old and old.lower() != new.lower():
        mail.send(
            mail.compose(
                old,
                "Your email address was changed",
                [
                    f"The email address of {user.username} is now {new}. "
                    "Mail for the account no longer comes here.",
                    "If you did not do this, reset your password at once:",
                ],
                mail.link("recovery.forgot"),
            )
        )
    flash(f"Thank you: {new} is confirmed.")
    if current_user.is_authenticated and current_user.id == user.id:
        session_policy.cache_user(user)
        return redirect(url_for("account.profile"), 303)
    return redirect(url_for("auth.login"), 303)


# "was this you?" ---


@bp.route("/not-me/<token>", methods=["GET", "POST"])
def not_me(token: str) -> ResponseReturnValue:
    """End the session (and its remembered device) a "was this you?" notice names, then
    lead to a password change."""
    db = get_db()
    found = find_token(db, token, NOTICE)
    if found is None:
        return dead_link(NOTICE)
    row, user = found
    form = ConfirmForm()
    if request.method == "GET":
        return render_template("account/not_me.html", form=form, ended=False)
    if not form.validate_on_submit():
        return render_template("account/not_me.html", form=form, ended=False), 400
    if not use(db, row):
        return dead_link(NOTICE)
    ref, _, series = (row.bound_to or "").partition(":")
    session_row = db.get(UserSession, ref)
    if session_row is not None and session_row.user_id == user.id:
        session_index.revoke([session_row])
    if series:
        db.execute(
            delete(RememberToken).where(
                RememberToken.series == series, RememberToken.user_id == user.id
            )
        )
        db.commit()
    events.record("session_revoked", user_id=user.id, revoked=ref, via="notice")
    return render_template("account/not_me.html", form=None, ended=True)
