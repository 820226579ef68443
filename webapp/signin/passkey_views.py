"""Blueprint: the passkey ceremonies' JSON routes, for static/js/passkeys.js.

/login/passkey signs in a visitor, or, for a signed-in user presenting one of their own
passkeys, counts as entering the password again (a fresh sign-in for sensitive actions).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from .. import events
from ..db import get_db
from ..models import User
from ..sessions import policy as session_policy
from ..web.safe_redirect import next_or_default
from . import passkeys
from .notify import tell_user

bp = Blueprint("passkeys", __name__)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _refused(message: str, status: int = 400) -> ResponseReturnValue:
    return jsonify(message=message), status


@bp.post("/account/passkeys/options")
@login_required
def register_options() -> ResponseReturnValue:
    """Adding a way in needs a fresh sign-in: otherwise the answer says where to get one."""
    if not session_policy.is_fresh():
        url = url_for("account.reauthenticate", next=url_for("security.security"))
        return jsonify(message="Confirm it is you first.", url=url), 401
    return jsonify(passkeys.registration_options(get_db(), current_user))


@bp.post("/account/passkeys")
@login_required
def register() -> ResponseReturnValue:
    body = _body()
    name = str(body.pop("name", "") or "")
    user = current_user._get_current_object()
    try:
        passkey = passkeys.register(get_db(), user, body, name)
    except passkeys.PasskeyError as error:
        return _refused(str(error))
    tell_user(user, "passkey_added")
    return jsonify(id=passkey.id, name=passkey.name), 201


@bp.post("/login/passkey/options")
def sign_in_options() -> ResponseReturnValue:
    return jsonify(passkeys.authentication_options())


@bp.post("/login/passkey")
def sign_in() -> ResponseReturnValue:
    db = get_db()
    try:
        passkey = passkeys.authenticate(db, _body())
    except passkeys.PasskeyError as error:
        events.record("sign_in_failed", method=passkeys.METHOD)
        return _refused(str(error))
    user = db.get_one(User, passkey.user_id)
    target = next_or_default(request.args.get("next"))
    if current_user.is_authenticated:
        if current_user.id != user.id:
            return _refused("This passkey belongs to another account.", 403)
        session_policy.reauthenticated(user)
        return jsonify(url=target)
    session_policy.start(user, method=passkeys.METHOD)
    return jsonify(url=target)
