"""OpenID Connect, the relying party's side of the protocol: each provider's metadata by
discovery, the authorization request (state, nonce, PKCE S256), the code exchange, and the
checks on ID tokens and back-channel logout tokens, with signing keys that may rotate.

Views live in oidc_views.py; this module knows nothing of sessions or accounts.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask, current_app
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from .. import clock
from ..config import oidc_providers

SCOPES = "openid profile email"
#: Seconds of clock difference tolerated between this server and a provider.
LEEWAY = 60
#: Seconds a provider's metadata and keys are reused before they are fetched again.
CACHE_SECONDS = 3600
#: At most one fetch of a provider's keys per this many seconds for an unknown key id, so that
#: forged tokens cannot make this server hammer the provider.
KEY_REFRESH_SECONDS = 10
#: Seconds a back-channel logout token is accepted after it was issued (its jti is remembered
#: that long to refuse a replay).
LOGOUT_TOKEN_MAX_AGE = 600
#: Seconds a re-authentication at the provider may take (its auth_time to the callback).
REAUTH_MAX_AGE = 300
HTTP_TIMEOUT = 10
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class OidcError(Exception):
    """A step of an OpenID Connect exchange failed: `reason` for the event log, `message` for
    the person (nothing in it comes from the provider's answer but its name)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Provider:
    """A configured provider, with what was fetched from it (metadata, keys) and when."""

    name: str
    issuer: str
    client_id: str
    client_secret: str
    label: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    metadata: dict[str, Any] | None = None
    metadata_at: float = 0.0
    keys: KeySet | None = None
    keys_at: float = 0.0


def providers(app: Flask | None = None) -> dict[str, Provider]:
    """The configured providers by name, in the order OIDC_PROVIDERS lists them."""
    app = app or current_app
    if "webapp.oidc" not in app.extensions:
        app.extensions["webapp.oidc"] = {
            name: Provider(
                name=name,
                issuer=settings["issuer"],
                client_id=settings["client_id"],
                client_secret=settings["client_secret"],
                label=settings["label"],
            )
            for name, settings in oidc_providers(app.config).items()
        }
    found: dict[str, Provider] = app.extensions["webapp.oidc"]
    return found


def _unreachable(provider: Provider) -> OidcError:
    return OidcError(
        "provider_unreachable", f"{provider.label} could not be reached. Try again later."
    )


def _get_json(provider: Provider, url: str) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError):
        raise _unreachable(provider) from None
    if not isinstance(data, dict):
        raise _unreachable(provider)
    return data


def metadata(provider: Provider) -> dict[str, Any]:
    """The provider's discovery document, fetched at most once per CACHE_SECONDS; its issuer
    must be the configured one (OpenID Connect Discovery 1.0, section 4.3)."""
    with provider.lock:
        if provider.metadata is None or clock.now() - provider.metadata_at > CACHE_SECONDS:
            data = _get_json(provider, provider.issuer + "/.well-known/openid-configuration")
            needed = ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if data.get("issuer") != provider.issuer or not all(data.get(k) for k in needed):
                raise OidcError(
                    "bad_metadata",
                    f"{provider.label} is not set up correctly here: ask the site's administrator.",
                )
            provider.metadata, provider.metadata_at = data, clock.now()
        return provider.metadata


def _key_set(provider: Provider, *, refresh: bool = False) -> KeySet:
    """The provider's signing keys; `refresh` fetches them again (a token names a key id we do
    not know: the provider rotated its keys), at most once per KEY_REFRESH_SECONDS."""
    jwks_uri = metadata(provider)["jwks_uri"]
    with provider.lock:
        age = clock.now() - provider.keys_at
        stale = provider.keys is None or age > CACHE_SECONDS
        if stale or (refresh and age > KEY_REFRESH_SECONDS):
            try:
                provider.keys = KeySet.import_key_set(_get_json(provider, jwks_uri))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise _unreachable(provider) from None
            provider.keys_at = clock.now()
        assert provider.keys is not None
        return provider.keys


def _decode(provider: Provider, token: str) -> jwt.Token:
    """Check the token's signature with the provider's keys (fetched again once for a key id
    they lack) and return it; OidcError("bad_signature") otherwise."""
    for refresh in (False, True):
        try:
            return jwt.decode(token, _key_set(provider, refresh=refresh), algorithms=ALGORITHMS)
        except InvalidKeyIdError:
            continue
        except (JoseError, ValueError):
            break
    raise OidcError(
        "bad_signature", f"{provider.label} sent a token that could not be verified. Try again."
    )


@dataclass
class Flow:
    """What the callback must compare or send: kept by the browser (signed) meanwhile."""

    state: str
    nonce: str
    verifier: str
    next: str | None = None
    link_user_id: int | None = None
    #: A signed-in user confirming it is them: the provider is asked to sign them in afresh.
    reauth_user_id: int | None = None


def start(provider: Provider, redirect_uri: str, flow: Flow) -> str:
    """The provider's authorization URL for this flow (code, PKCE S256, state, nonce)."""
    client = OAuth2Session(
        provider.client_id, redirect_uri=redirect_uri, scope=SCOPES, code_challenge_method="S256"
    )
    # Re-authentication must not ride on the provider's own session: prompt=login makes it
    # ask again, max_age puts auth_time in the ID token (checked by check_fresh_sign_in).
    # Not max_age=0: a provider may then ask again and again (each sign-in is already older).
    again = (
        {"prompt": "login", "max_age": str(REAUTH_MAX_AGE)}
        if flow.reauth_user_id is not None
        else {}
    )
    url, _ = client.create_authorization_url(
        metadata(provider)["authorization_endpoint"],
        state=flow.state,
        code_verifier=flow.verifier,
        nonce=flow.nonce,
        **again,
    )
    return str(url)


def new_flow(
    next_url: str | None = None,
    link_user_id: int | None = None,
    reauth_user_id: int | None = None,
) -> Flow:
    return Flow(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(64),
        next=next_url,
        link_user_id=link_user_id,
        reauth_user_id=reauth_user_id,
    )


def check_fresh_sign_in(provider: Provider, claims: dict[str, Any]) -> None:
    """Refuse a re-authentication the provider did not perform just now (its auth_time)."""
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int) or clock.now() - auth_time > REAUTH_MAX_AGE + LEEWAY:
        raise OidcError(
            "reauth_not_fresh",
            f"{provider.label} did not ask for your sign-in again. Try again.",
        )


def finish(provider: Provider, redirect_uri: str, code: str, flow: Flow) -> tuple[dict, str]:
    """Exchange the code, check the ID token; (its claims with the userinfo's, raw ID token)."""
    endpoints = metadata(provider)
    client = OAuth2Session(
        provider.client_id, provider.client_secret, redirect_uri=redirect_uri, scope=SCOPES
    )
    try:
        token = client.fetch_token(
            endpoints["token_endpoint"],
            grant_type="authorization_code",
            code=code,
            code_verifier=flow.verifier,
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException:
        raise _unreachable(provider) from None
    except (AuthlibBaseError, ValueError):
        raise OidcError(
            "code_refused", f"{provider.label} refused to complete the sign-in. Try again."
        ) from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise OidcError("no_id_token", f"{provider.label} did not say who you are. Try again.")
    claims = check_id_token(provider, id_token, flow.nonce)
    if endpoints.get("userinfo_endpoint") and token.get("access_token"):
        claims = {**_userinfo(provider, client, endpoints["userinfo_endpoint"], claims), **claims}
    return claims, id_token


def _userinfo(
    provider: Provider, client: OAuth2Session, url: str, claims: dict[str, Any]
) -> dict[str, Any]:
    """The userinfo claims when they are about the ID token's subject; else none."""
    try:
        response = client.get(url, timeout=HTTP_TIMEOUT)
        info = response.json() if response.ok else {}
    except (requests.RequestException, ValueError):
        return {}
    return info if isinstance(info, dict) and info.get("sub") == claims["sub"] else {}


def _registry(provider: Provider, **claims: Any) -> JWTClaimsRegistry:
    return JWTClaimsRegistry(
        now=int(clock.now()),
        leeway=LEEWAY,
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": provider.client_id},
        iat={"essential": True},
        **claims,
    )


def _validate(provider: Provider, registry: JWTClaimsRegistry, claims: dict[str, Any]) -> None:
    try:
        registry.validate(claims)
    except JoseError as error:
        reason = getattr(error, "claim", None) or getattr(error, "error", "claims")
        if reason in ("exp", "iat", "nbf") or "expired" in str(error).lower():
            raise OidcError(
                "token_time",
                f"{provider.label}'s answer is out of date (or this server's clock is wrong). "
                "Try again.",
            ) from None
        raise OidcError(
            f"bad_claim_{reason}", f"{provider.label} sent a token that is not for this site."
        ) from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise OidcError(
            "bad_claim_azp", f"{provider.label} sent a token that is not for this site."
        )


def check_id_token(provider: Provider, id_token: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims once its signature, issuer, audience, times and nonce hold."""
    claims = dict(_decode(provider, id_token).claims)
    registry = _registry(
        provider,
        sub={"essential": True},
        exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    _validate(provider, registry, claims)
    if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= 255:
        raise OidcError("bad_claim_sub", f"{provider.label} sent a token without a subject.")
    return claims


def check_logout_token(provider: Provider, logout_token: str) -> dict[str, Any]:
    """The claims of a back-channel logout token (Back-Channel Logout 1.0, section 2.6) once its
    signature, issuer, audience, issue time, events and sid/sub hold; the caller refuses a
    replayed jti."""
    claims = dict(_decode(provider, logout_token).claims)
    registry = _registry(provider, jti={"essential": True}, events={"essential": True})
    _validate(provider, registry, claims)
    events = claims["events"]
    refused = (
        not isinstance(events, dict)
        or not isinstance(events.get(LOGOUT_EVENT), dict)
        or "nonce" in claims
        or not (isinstance(claims.get("sid"), str) or isinstance(claims.get("sub"), str))
        or not isinstance(claims["jti"], str)
        or not 0 < len(claims["jti"]) <= 255
        or not isinstance(claims["iat"], int)
        or clock.now() - claims["iat"] > LOGOUT_TOKEN_MAX_AGE
    )
    if refused:
        raise OidcError("bad_logout_token", "Not a logout token.")
    return claims


def end_session_url(provider: Provider, id_token: str, post_logout_redirect_uri: str) -> str | None:
    """Where to send the browser to end the provider's session too (RP-Initiated Logout 1.0),
    when the provider offers it; None when it does not or cannot be reached."""
    try:
        endpoint = metadata(provider).get("end_session_endpoint")
    except OidcError:
        return None
    if not isinstance(endpoint, str) or not endpoint:
        return None
    query = urlencode(
        {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "client_id": provider.client_id,
        }
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
