"""Blueprint: sign-in through OpenID Connect providers (/login/<name> and its callback),
back-channel logout, next-auth's /providers list, linking providers to an account, and
re-authentication at a linked provider (how an account with no password confirms it is you).

While the visitor is at the provider, the flow's state, nonce, PKCE verifier and `next` wait in
a short-lived signed cookie scoped to the callback's path, not in the session store: anonymous
visitors have no stored session (sessions/store.py keeps them out, so that anyone requesting
/login/<name> cannot fill the store), and a cookie needs no cleanup and works on every host
that shares the secret key. Its signature stops forgery; its contents are the visitor's own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .. import clock, events, users
from ..db import get_db
from ..extensions import csrf
from ..forms import LoginForm
from ..models import OidcIdentity, OidcLogoutToken, User, UserSession
from ..sessions import index as session_index
from ..sessions import policy as session_policy
from ..sessions.store import current_session
from ..web.safe_redirect import next_or_default, safe_next
from . import oidc
from .oidc import OidcError, Provider

bp = Blueprint("oidc", __name__)

#: Seconds a visitor has to come back from the provider.
FLOW_MAX_AGE = 600
FLOW_SALT = "webapp-oidc-flow"
#: The session key holding the provider that signed this session in and its ID token (the
#: id_token_hint of RP-initiated logout).
SESSION_KEY = "_oidc"


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    """oidc_providers(): the sign-in page's buttons (partials/login_providers.html);
    linked_providers(): the re-authentication page's (account/reauthenticate.html)."""
    return {"oidc_providers": oidc.providers, "linked_providers": _linked_providers}


def _linked_providers() -> list[Provider]:
    """The configured providers that sign the current user in."""
    if not current_user.is_authenticated:
        return []
    configured = oidc.providers()
    linked = [identity.provider for identity in _identities_of(current_user.id)]
    return [configured[name] for name in linked if name in configured]


def _provider(name: str) -> Provider:
    provider = oidc.providers().get(name)
    if provider is None:
        abort(404)
    return provider


def _callback_url(provider: Provider) -> str:
    return url_for("oidc.callback", name=provider.name, _external=True)


def _flow_cookie() -> tuple[str, bool]:
    """The flow cookie's name and whether it is Secure (path-scoped, so no __Host- prefix)."""
    secure = bool(current_app.config["SESSION_COOKIE_SECURE"])
    return ("__Secure-oidc-flow" if secure else "oidc-flow"), secure


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=FLOW_SALT)


def _to_provider(provider: Provider, flow: oidc.Flow) -> ResponseReturnValue:
    try:
        target = oidc.start(provider, _callback_url(provider), flow)
    except OidcError as error:
        return _failed(provider, error, flow.next)
    response = redirect(target, 302)
    name, secure = _flow_cookie()
    response.set_cookie(
        name,
        _serializer().dumps(vars(flow)),
        max_age=FLOW_MAX_AGE,
        path=url_for("oidc.callback", name=provider.name),
        secure=secure,
        httponly=True,
        samesite="Lax",  # sent on the provider's top-level redirect back
    )
    return response


@bp.get("/login/<name>")
def login(name: str) -> ResponseReturnValue:
    provider = _provider(name)
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_or_default(next_url), 303)
    return _to_provider(provider, oidc.new_flow(next_url))


def _read_flow() -> oidc.Flow | None:
    name, _ = _flow_cookie()
    try:
        data = _serializer().loads(request.cookies.get(name, ""), max_age=FLOW_MAX_AGE)
        return oidc.Flow(**data)
    except (BadData, TypeError):
        return None


def _failed(provider: Provider, error: OidcError, next_url: str | None) -> ResponseReturnValue:
    """The sign-in page, saying what went wrong; an event for the log."""
    events.record("oidc_sign_in_failed", provider=provider.name, reason=error.reason)
    form = LoginForm()
    form.next.data = next_url or ""
    return render_template("auth/login.html", form=form, error=error.message), 400


@bp.get("/login/<name>/callback")
def callback(name: str) -> ResponseReturnValue:
    provider = _provider(name)
    flow = _read_flow()
    response = current_app.make_response(_callback(provider, flow))
    cookie, secure = _flow_cookie()
    response.delete_cookie(cookie, path=request.path, secure=secure, httponly=True, samesite="Lax")
    return response


def _callback(provider: Provider, flow: oidc.Flow | None) -> ResponseReturnValue:
    state = request.args.get("state", "")
    if flow is None or not state or state != flow.state:
        error = OidcError(
            "bad_state", "That sign-in had expired or was started elsewhere. Please try again."
        )
        return _failed(provider, error, flow.next if flow else None)
    if request.args.get("iss", provider.issuer) != provider.issuer:  # RFC 9207: a mix-up
        error = OidcError("bad_iss", f"That answer did not come from {provider.label}.")
        return _failed(provider, error, flow.next)
    if "error" in request.args or not request.args.get("code"):
        denied = request.args.get("error") == "access_denied"
        error = OidcError(
            "denied" if denied else "provider_error",
            f"{provider.label} did not sign you in"
            + (": you declined." if denied else ". Please try again."),
        )
        return _failed(provider, error, flow.next)
    try:
        claims, id_token = oidc.finish(
            provider, _callback_url(provider), request.args["code"], flow
        )
    except OidcError as error:
        return _failed(provider, error, flow.next)
    db = get_db()
    identity = db.scalar(
        select(OidcIdentity).where(
            OidcIdentity.provider == provider.name, OidcIdentity.subject == claims["sub"]
        )
    )
    if flow.link_user_id is not None:
        return _link(provider, flow.link_user_id, identity, claims["sub"])
    if flow.reauth_user_id is not None:
        return _reauthenticated(provider, flow, identity, claims)
    if identity is None:
        try:
            identity = _new_account(provider, claims)
        except OidcError as error:
            return _failed(provider, error, flow.next)
    signed_in = db.get(User, identity.user_id)
    assert signed_in is not None  # the identity's foreign key cascades
    session_policy.start(signed_in, method=f"oidc:{provider.name}")
    _remember_provider_session(provider, claims, id_token)
    return redirect(next_or_default(flow.next), 303)


def _new_account(provider: Provider, claims: dict[str, Any]) -> OidcIdentity:
    """A new account for the provider's subject, linked to it."""
    db = get_db()
    try:
        user = users.create_user_from_claims(db, claims)
    except users.AccountError as refused:
        raise OidcError("account_refused", str(refused)) from None
    identity = OidcIdentity(provider=provider.name, subject=claims["sub"], user_id=user.id)
    db.add(identity)
    try:
        db.commit()
    except IntegrityError:  # the same person's first sign-in, in parallel, linked first
        db.rollback()
        db.delete(user)
        db.commit()
        raise OidcError("account_race", "You were signing in twice at once: try again.") from None
    events.record("oidc_account_created", user_id=user.id, provider=provider.name)
    return identity


def _remember_provider_session(provider: Provider, claims: dict[str, Any], id_token: str) -> None:
    """Note which provider session this one came from: back-channel logout names it."""
    row = session_index.find(current_session().sid)
    if row is not None:
        row.oidc_provider = provider.name
        sid = claims.get("sid")
        row.oidc_sid = sid if isinstance(sid, str) and len(sid) <= 255 else None
        get_db().commit()
    session[SESSION_KEY] = {"provider": provider.name, "id_token": id_token}


def _link(
    provider: Provider, user_id: int, identity: OidcIdentity | None, subject: str
) -> ResponseReturnValue:
    if not current_user.is_authenticated or current_user.id != user_id:
        error = OidcError("link_wrong_user", "Sign in first, then link the provider again.")
        return _failed(provider, error, None)
    if identity is not None and identity.user_id != user_id:
        flash(f"That {provider.label} account already signs in another user here.")
    elif identity is None:
        db = get_db()
        db.add(OidcIdentity(provider=provider.name, subject=subject, user_id=user_id))
        db.commit()
        events.record("oidc_linked", user_id=user_id, provider=provider.name)
        flash(f"{provider.label} now signs you in.")
    return redirect(url_for("oidc.account_providers"), 303)


@bp.post("/login/<name>/backchannel-logout")
@csrf.exempt
@session_policy.read_only
def backchannel_logout(name: str) -> ResponseReturnValue:
    """OpenID Connect Back-Channel Logout 1.0: the provider's signed logout token ends the
    sessions it names (by sid, else every session of the subject from this provider)."""
    provider = _provider(name)
    try:
        claims = oidc.check_logout_token(provider, request.form.get("logout_token", ""))
        _refuse_replay(provider, claims)
    except OidcError as error:
        events.record("oidc_logout_refused", provider=name, reason=error.reason)
        return _no_store(jsonify(error="invalid_request", error_description=error.message), 400)
    rows = _sessions_named(provider, claims)
    ended = session_index.revoke(rows)
    users_ended = sorted({row.user_id for row in rows})
    events.record("oidc_backchannel_logout", provider=name, sessions=ended, users=users_ended)
    return _no_store(current_app.make_response(("", 200)), 200)


def _no_store(response: Response, status: int) -> ResponseReturnValue:
    response.headers["Cache-Control"] = "no-store"
    return response, status


def _refuse_replay(provider: Provider, claims: dict[str, Any]) -> None:
    """Remember the token's jti while it could be accepted; OidcError if it was seen."""
    db = get_db()
    now = clock.utcnow()
    keep = timedelta(seconds=oidc.LOGOUT_TOKEN_MAX_AGE + oidc.LEEWAY)
    db.execute(delete(OidcLogoutToken).where(OidcLogoutToken.seen_at < now - keep))
    db.add(OidcLogoutToken(provider=provider.name, jti=claims["jti"], seen_at=now))
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise OidcError("replayed", "That logout token was already used.") from None


def _sessions_named(provider: Provider, claims: dict[str, Any]) -> list[UserSession]:
    db = get_db()
    query = select(UserSession).where(UserSession.oidc_provider == provider.name)
    if isinstance(claims.get("sub"), str):
        user_id = db.scalar(
            select(OidcIdentity.user_id).where(
                OidcIdentity.provider == provider.name, OidcIdentity.subject == claims["sub"]
            )
        )
        if user_id is None:
            return []
        query = query.where(UserSession.user_id == user_id)
    if isinstance(claims.get("sid"), str):
        query = query.where(UserSession.oidc_sid == claims["sid"])
    return list(db.scalars(query))


def provider_logout_url() -> str | None:
    """Where signing out here should send the browser to end the provider's session too
    (RP-Initiated Logout), for a session a provider signed in; None otherwise."""
    signed_in_by = session.get(SESSION_KEY)
    if not isinstance(signed_in_by, dict):
        return None
    provider = oidc.providers().get(signed_in_by.get("provider", ""))
    if provider is None:
        return None
    back = url_for("auth.login", _external=True)
    return oidc.end_session_url(provider, signed_in_by["id_token"], back)


@bp.get("/providers")
@session_policy.read_only
def providers() -> ResponseReturnValue:
    """next-auth's /api/auth/providers: every way to sign in, password sign-in as credentials."""
    password = url_for("auth.login", _external=True)
    found: dict[str, dict[str, str]] = {
        "credentials": {
            "id": "credentials",
            "name": "Credentials",
            "type": "credentials",
            "signinUrl": password,
            "callbackUrl": password,
        }
    }
    for provider in oidc.providers().values():
        found[provider.name] = {
            "id": provider.name,
            "name": provider.label,
            "type": "oidc",
            "signinUrl": url_for("oidc.login", name=provider.name, _external=True),
            "callbackUrl": _callback_url(provider),
        }
    return jsonify(found)


# linking providers to the signed-in account -----------------------------------------------


def _identities_of(user_id: int) -> list[OidcIdentity]:
    query = select(OidcIdentity).where(OidcIdentity.user_id == user_id)
    return list(get_db().scalars(query.order_by(OidcIdentity.created)))


@bp.get("/account/providers")
@login_required
def account_providers() -> ResponseReturnValue:
    return render_template(
        "account/providers.html",
        providers=oidc.providers(),
        linked={identity.provider: identity for identity in _identities_of(current_user.id)},
    )


@bp.post("/account/providers/<name>/link")
@login_required
def link(name: str) -> ResponseReturnValue:
    """Send the signed-in user to the provider; its callback links what it signs in."""
    provider = _provider(name)
    if not session_policy.is_fresh():
        flash("Sign in again (within the last few minutes) before linking a provider.")
        return redirect(url_for("oidc.account_providers"), 303)
    return _to_provider(provider, oidc.new_flow(link_user_id=current_user.id))


@bp.post("/account/reauthenticate/<name>")
@login_required
def reauthenticate(name: str) -> ResponseReturnValue:
    """Confirm it is you at a provider linked to this account (the way in of an account with
    no password); its callback makes the session fresh and carries on to `next`."""
    provider = _provider(name)
    if name not in {identity.provider for identity in _identities_of(current_user.id)}:
        abort(404)
    next_url = safe_next(request.form.get("next"))
    return _to_provider(provider, oidc.new_flow(next_url, reauth_user_id=current_user.id))


def _reauthenticated(
    provider: Provider, flow: oidc.Flow, identity: OidcIdentity | None, claims: dict[str, Any]
) -> ResponseReturnValue:
    """The end of a re-authentication: the same user, signed in at the provider just now."""
    back = url_for("account.reauthenticate", next=flow.next)
    if not current_user.is_authenticated or current_user.id != flow.reauth_user_id:
        return _failed(provider, OidcError("reauth_wrong_user", "Sign in first."), None)
    if identity is None or identity.user_id != current_user.id:
        events.record("oidc_reauth_refused", user_id=current_user.id, provider=provider.name)
        flash(f"That {provider.label} account does not sign you in here.")
        return redirect(back, 303)
    try:
        oidc.check_fresh_sign_in(provider, claims)
    except OidcError as error:
        events.record("oidc_reauth_refused", user_id=current_user.id, provider=provider.name)
        flash(error.message)
        return redirect(back, 303)
    session_policy.reauthenticated(current_user._get_current_object())
    return redirect(next_or_default(flow.next), 303)


@bp.post("/account/providers/<name>/unlink")
@login_required
def unlink(name: str) -> ResponseReturnValue:
    """Unlink a provider, unless it is the user's last way to sign in."""
    provider = _provider(name)
    identities = _identities_of(current_user.id)
    identity = next((i for i in identities if i.provider == name), None)
    if identity is None:
        abort(404)
    if len(identities) == 1 and not users.has_usable_password(current_user):
        flash(f"{provider.label} is your only way to sign in: set a password first.")
        return redirect(url_for("oidc.account_providers"), 303)
    db = get_db()
    db.delete(identity)
    db.commit()
    events.record("oidc_unlinked", user_id=current_user.id, provider=name)
    flash(f"{provider.label} no longer signs you in.")
    return redirect(url_for("oidc.account_providers"), 303)
