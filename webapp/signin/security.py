"""Blueprint: /account/security, the signed-in user's second factors: the authenticator app
(set up, turn off), recovery codes (regenerate) and passkeys (rename, remove).

Whatever weakens or replaces a factor needs a fresh sign-in (account.fresh_required), and the
user is told (tell_user): a stolen session cannot quietly take a factor away.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from ..account import fresh_required
from ..db import get_db
from ..models import Passkey
from ..sessions import policy as session_policy
from ..sessions import remember
from ..widget import views as widget
from . import passkeys, totp
from .notify import tell_user

bp = Blueprint("security", __name__, url_prefix="/account")

#: Session key: the secret being set up, until its first code confirms it.
SETUP_SECRET = "_totp_setup_secret"  # noqa: S105 (a key name)


class CodeForm(FlaskForm):
    code = StringField("Code from the app", validators=[InputRequired("Enter the code.")])


class PasskeyNameForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired("Name it."), Length(max=64)])


def _page(status: int = 200) -> tuple[str, int]:
    db, user = get_db(), current_user._get_current_object()
    html = widget.render_protected_page(
        "account/security.html",
        totp_on=totp.is_enabled(db, user),
        codes_left=totp.recovery_codes_left(db, user),
        passkeys=passkeys.of_user(db, user),
        form=FlaskForm(),
    )
    return html, status


@bp.get("/security")
@login_required
def security() -> ResponseReturnValue:
    return _page()


def _setup_page(
    secret: str, form: CodeForm, status: int = 200, error: str | None = None
) -> tuple[str, int]:
    html = widget.render_protected_page(
        "account/totp_setup.html",
        secret=secret,
        qr=totp.qr_code(secret, current_user),
        form=form,
        error=error,
    )
    return html, status


@bp.post("/totp/setup")
@login_required
@fresh_required
def totp_setup() -> ResponseReturnValue:
    """Start setting up the app: a new secret, kept in the session until a code confirms it."""
    secret = totp.new_secret()
    session[SETUP_SECRET] = secret
    return _setup_page(secret, CodeForm())


@bp.post("/totp/confirm")
@login_required
@fresh_required
def totp_confirm() -> ResponseReturnValue:
    """A first right code turns the app on; the recovery codes are shown this once."""
    secret = session.get(SETUP_SECRET)
    if not secret:
        flash("Start setting up the authenticator app again.")
        return redirect(url_for("security.security"), 303)
    form = CodeForm()
    if not form.validate_on_submit():
        return _setup_page(secret, form, 400)
    step = totp.matching_step(secret, form.code.data or "")
    if step is None:
        return _setup_page(secret, form, 400, "That code is not right. Try the newest one.")
    user = current_user._get_current_object()
    codes = totp.enable(get_db(), user, secret, step)
    session.pop(SETUP_SECRET, None)
    session_policy.rotate()  # a privilege change
    # Other remembered devices never gave a code: when their sessions end, they sign in again
    # with one rather than restore themselves. This device just did.
    remember.revoke_all(user, keep=remember.current_selector())
    tell_user(user, "totp_enabled")
    return _codes_page(codes)


def _codes_page(codes: list[str]) -> ResponseReturnValue:
    html = widget.render_protected_page("account/recovery_codes.html", codes=codes)
    return html, 200, {"Cache-Control": "no-store"}


@bp.post("/totp/disable")
@login_required
@fresh_required
def totp_disable() -> ResponseReturnValue:
    user = current_user._get_current_object()
    if totp.disable(get_db(), user):
        tell_user(user, "totp_disabled")
        flash("The authenticator app is off; your recovery codes no longer work.")
    return redirect(url_for("security.security"), 303)


@bp.post("/recovery-codes")
@login_required
@fresh_required
def recovery_codes() -> ResponseReturnValue:
    """New recovery codes replace the old ones (which stop working)."""
    db, user = get_db(), current_user._get_current_object()
    if not totp.is_enabled(db, user):
        return redirect(url_for("security.security"), 303)
    codes = totp.new_recovery_codes(db, user)
    tell_user(user, "recovery_codes_replaced")
    return _codes_page(codes)


def _own_passkey(passkey_id: int) -> Passkey:
    found = get_db().get(Passkey, passkey_id)
    if found is None or found.user_id != current_user.id:
        abort(404)
    return found


@bp.post("/passkeys/<int:passkey_id>/rename")
@login_required
def passkey_rename(passkey_id: int) -> ResponseReturnValue:
    found, form = _own_passkey(passkey_id), PasskeyNameForm()
    if not form.validate_on_submit():
        flash("A passkey's name is 1 to 64 characters.")
        return redirect(url_for("security.security"), 303)
    found.name = (form.name.data or "").strip()[:64] or found.name
    get_db().commit()
    return redirect(url_for("security.security"), 303)


@bp.post("/passkeys/<int:passkey_id>/remove")
@login_required
@fresh_required
def passkey_remove(passkey_id: int) -> ResponseReturnValue:
    found, db = _own_passkey(passkey_id), get_db()
    user = current_user._get_current_object()
    db.delete(found)
    db.commit()
    last = not passkeys.of_user(db, user)
    tell_user(user, "last_passkey_removed" if last else "passkey_removed")
    flash(f"The passkey “{found.name}” was removed.")
    return redirect(url_for("security.security"), 303)
