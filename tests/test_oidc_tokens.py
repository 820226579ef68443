"""The checks on ID tokens and back-channel logout tokens, with tokens signed here (keys the
test holds), and the OpenID settings and usernames made from claims."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from helpers import FakeClock
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from webapp import create_app
from webapp.config import ConfigError, oidc_from_environment, oidc_providers
from webapp.db import get_db
from webapp.models import OidcIdentity, User, UserSession
from webapp.signin import oidc, oidc_views
from webapp.signin.oidc import LOGOUT_EVENT, OidcError, Provider
from webapp.users import create_user_from_claims

ISSUER = "https://id.example.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})


@pytest.fixture
def app(tmp_path: Any, clock: FakeClock) -> Iterator[Flask]:
    """One backend is enough: nothing here touches the session store's rules."""
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECURE_COOKIES": False,
            "CLOCK": clock,
            "OIDC_PROVIDERS": "local",
            "OIDC_LOCAL_ISSUER": ISSUER,
            "OIDC_LOCAL_CLIENT_ID": "webapp",
            "OIDC_LOCAL_CLIENT_SECRET": "secret",
        }
    )
    with app.app_context():
        provider = oidc.providers()["local"]
        provider.metadata = {
            "issuer": ISSUER,
            "authorization_endpoint": ISSUER + "/auth",
            "token_endpoint": ISSUER + "/token",
            "jwks_uri": ISSUER + "/jwks",
        }
        provider.metadata_at = provider.keys_at = clock()
        provider.keys = KeySet([RSAKey.import_key(KEY.as_dict(private=False))])
        yield app


@pytest.fixture
def provider(app: Flask) -> Provider:
    return oidc.providers()["local"]


def sign(claims: dict[str, Any], key: RSAKey = KEY, typ: str = "JWT") -> str:
    return jwt.encode({"alg": "RS256", "kid": "k1", "typ": typ}, claims, key)


def id_claims(clock: FakeClock, **changes: Any) -> dict[str, Any]:
    now = int(clock())
    claims = {"iss": ISSUER, "aud": "webapp", "sub": "u1", "iat": now, "exp": now + 300}
    return claims | {"nonce": "n0nce"} | changes


def logout_claims(clock: FakeClock, **changes: Any) -> dict[str, Any]:
    now = int(clock())
    claims = {"iss": ISSUER, "aud": "webapp", "iat": now, "jti": "j1", "sid": "s1"}
    return claims | {"events": {LOGOUT_EVENT: {}}} | changes


def test_a_good_id_token_passes(provider: Provider, clock: FakeClock) -> None:
    claims = oidc.check_id_token(provider, sign(id_claims(clock)), "n0nce")
    assert claims["sub"] == "u1"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "another-app"}, "bad_claim_aud"),
        ({"aud": ["webapp", "another-app"]}, "bad_claim_azp"),
        ({"iss": "https://evil.example.test"}, "bad_claim_iss"),
        ({"nonce": "replayed"}, "bad_claim_nonce"),
        ({"sub": None}, "bad_claim_sub"),
    ],
)
def test_an_id_token_for_someone_else_is_refused(
    provider: Provider, clock: FakeClock, changes: dict[str, Any], reason: str
) -> None:
    claims = {k: v for k, v in id_claims(clock, **changes).items() if v is not None}
    with pytest.raises(OidcError) as refused:
        oidc.check_id_token(provider, sign(claims), "n0nce")
    assert refused.value.reason == reason


def test_an_id_token_past_its_expiry_and_the_leeway_is_refused(
    provider: Provider, clock: FakeClock
) -> None:
    token = sign(id_claims(clock))
    clock.advance(300 + oidc.LEEWAY - 1)  # within the tolerated clock difference
    oidc.check_id_token(provider, token, "n0nce")
    clock.advance(2)
    with pytest.raises(OidcError) as refused:
        oidc.check_id_token(provider, token, "n0nce")
    assert refused.value.reason == "token_time"


def test_an_id_token_signed_by_another_key_is_refused(provider: Provider, clock: FakeClock) -> None:
    with pytest.raises(OidcError) as refused:
        oidc.check_id_token(provider, sign(id_claims(clock), STRANGER), "n0nce")
    assert refused.value.reason == "bad_signature"


def test_a_good_logout_token_passes(provider: Provider, clock: FakeClock) -> None:
    token = sign(logout_claims(clock), typ="logout+jwt")
    assert oidc.check_logout_token(provider, token)["sid"] == "s1"


@pytest.mark.parametrize(
    "changes",
    [
        {"events": {"http://example.test/other": {}}},
        {"events": None},
        {"nonce": "n"},
        {"sid": None},
        {"jti": None},
        {"aud": "another-app"},
        {"iat": 1},
    ],
)
def test_a_logout_token_missing_a_part_is_refused(
    provider: Provider, clock: FakeClock, changes: dict[str, Any]
) -> None:
    claims = {k: v for k, v in logout_claims(clock, **changes).items() if v is not None}
    with pytest.raises(OidcError):
        oidc.check_logout_token(provider, sign(claims))


def signed_in_row(app: Flask, subject: str, sid: str) -> tuple[int, str]:
    """A user of the provider with one indexed session from provider session `sid`."""
    db = get_db()
    user = create_user_from_claims(db, {"sub": subject, "preferred_username": subject})
    db.add(OidcIdentity(provider="local", subject=subject, user_id=user.id))
    row = UserSession(
        id=subject[:16].ljust(16, "0"),
        sid_hash=subject.ljust(64, "0"),
        user_id=user.id,
        created_at=oidc.clock.utcnow(),
        last_active_at=oidc.clock.utcnow(),
        oidc_provider="local",
        oidc_sid=sid,
    )
    db.add(row)
    db.commit()
    return user.id, row.id


def test_a_logout_token_with_only_sub_ends_all_of_that_user_s_sessions(
    app: Flask, clock: FakeClock
) -> None:
    signed_in_row(app, "uone", "s1")
    signed_in_row(app, "utwo", "s2")
    claims = logout_claims(clock, sub="uone")
    del claims["sid"]
    token = sign(claims)
    answer = app.test_client().post("/login/local/backchannel-logout", data={"logout_token": token})
    assert answer.status_code == 200
    left = get_db().scalars(select(UserSession.oidc_sid)).all()
    assert left == ["s2"]
    replay = app.test_client().post("/login/local/backchannel-logout", data={"logout_token": token})
    assert replay.status_code == 400


def test_a_logout_token_naming_another_user_s_sid_ends_nothing(
    app: Flask, clock: FakeClock
) -> None:
    signed_in_row(app, "uone", "s1")
    signed_in_row(app, "utwo", "s2")
    token = sign(logout_claims(clock, sub="uone", sid="s2"))
    answer = app.test_client().post("/login/local/backchannel-logout", data={"logout_token": token})
    assert answer.status_code == 200
    assert sorted(get_db().scalars(select(UserSession.oidc_sid)).all()) == ["s1", "s2"]


@pytest.mark.parametrize(
    ("claims", "username"),
    [
        ({"preferred_username": "Ann Lee"}, "Ann.Lee"),
        ({"preferred_username": "¿?", "email": "ann.o+x@example.test"}, "ann.ox"),
        ({"name": "Zoë Ångström"}, "Zo.ngstrm"),
        ({"name": "--"}, "user"),
        ({"preferred_username": "a" * 200}, "a" * 56),
    ],
)
def test_usernames_from_claims(app: Flask, claims: dict[str, Any], username: str) -> None:
    assert create_user_from_claims(get_db(), {"sub": "x", **claims}).username == username


def test_a_taken_username_gets_a_number(app: Flask) -> None:
    made = [create_user_from_claims(get_db(), {"preferred_username": "ann"}) for _ in range(3)]
    assert [user.username for user in made] == ["ann", "ann-2", "ann-3"]


def test_provider_settings_come_from_webapp_oidc_variables() -> None:
    environ = {
        "WEBAPP_OIDC_MY_IDP_ISSUER": "https://idp.example.test/",
        "WEBAPP_OIDC_MY_IDP_CLIENT_ID": "app",
        "WEBAPP_OIDC_MY_IDP_CLIENT_SECRET": "s",
        "WEBAPP_OIDC_MY_IDP_LABEL": "My IdP",
        "WEBAPP_OTHER": "x",
    }
    config = {"OIDC_PROVIDERS": "my-idp", **oidc_from_environment(environ)}
    assert oidc_providers(config) == {
        "my-idp": {
            "issuer": "https://idp.example.test",
            "client_id": "app",
            "client_secret": "s",
            "label": "My IdP",
        }
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"OIDC_PROVIDERS": "Bad_Name"}, "WEBAPP_OIDC_PROVIDERS: 'Bad_Name' is not a provider"),
        ({"OIDC_PROVIDERS": "idp"}, "WEBAPP_OIDC_IDP_ISSUER must be set"),
        (
            {"OIDC_PROVIDERS": "idp", "OIDC_IDP_ISSUER": "https://i.test"},
            "WEBAPP_OIDC_IDP_CLIENT_ID must be set",
        ),
        (
            {
                "OIDC_PROVIDERS": "idp",
                "OIDC_IDP_ISSUER": "http://localhost.evil.test",
                "OIDC_IDP_CLIENT_ID": "a",
                "OIDC_IDP_CLIENT_SECRET": "b",
            },
            "WEBAPP_OIDC_IDP_ISSUER must be an https:// URL",
        ),
    ],
)
def test_bad_provider_settings_are_refused_naming_the_variable(
    config: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        oidc_providers(config)
    assert message in str(refused.value.message)


def test_a_parallel_first_sign_in_of_the_same_person_leaves_one_account(app: Flask) -> None:
    signed_in_row(app, "twice", "s1")  # the other request linked the subject first
    with app.test_request_context(), pytest.raises(OidcError) as refused:
        oidc_views._new_account(oidc.providers()["local"], {"sub": "twice", "name": "T"})
    assert refused.value.reason == "account_race"
    assert [user.username for user in get_db().scalars(select(User))] == ["twice"]
