"""Passkeys on the server, with a software authenticator: registration needs a fresh sign-in,
challenges are single-use and bound to the browser that asked, origin and RP id come from the
settings, user verification and sign counters are checked (issue 17; ASVS 2.7, 2.8)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import AuthActions, csrf_token
from support.soft_authenticator import UP, SoftAuthenticator

from webapp.config import relying_party_id
from webapp.db import get_db
from webapp.models import Passkey


def post_json(client, path: str, body: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    token = csrf_token(client, "/")
    return client.post(path, json=body or {}, headers={"X-CSRFToken": token})


@pytest.fixture
def authenticator(app) -> SoftAuthenticator:  # type: ignore[no-untyped-def]
    return SoftAuthenticator(relying_party_id(app.config), app.config["BASE_URL"])


def register(client, authenticator: SoftAuthenticator, name: str = "Phone"):  # type: ignore[no-untyped-def]
    options = post_json(client, "/account/passkeys/options")
    assert options.status_code == 200, options.json
    assert options.json["authenticatorSelection"]["residentKey"] == "required"
    assert options.json["authenticatorSelection"]["userVerification"] == "required"
    return post_json(
        client, "/account/passkeys", {**authenticator.create(options.json), "name": name}
    )


def sign_in(client, authenticator: SoftAuthenticator, **kwargs: Any):  # type: ignore[no-untyped-def]
    options = post_json(client, "/login/passkey/options")
    assert options.status_code == 200
    assert options.json["userVerification"] == "required"
    return post_json(client, "/login/passkey", authenticator.get(options.json, **kwargs))


@pytest.fixture
def enrolled(app, client, auth, user, authenticator) -> SoftAuthenticator:  # type: ignore[no-untyped-def]
    auth.login()
    assert register(client, authenticator).status_code == 201
    auth.logout()
    return authenticator


def test_v2_7_register_then_sign_in_with_a_passkey(app, client, enrolled):
    response = sign_in(client, enrolled)
    assert response.status_code == 200 and response.json == {"url": "/profile"}
    session = client.get("/session").json
    assert session["user"]["username"] == "alice" and session["method"] == "passkey"
    with app.app_context():
        (stored,) = get_db().query(Passkey).all()
        assert stored.name == "Phone" and stored.last_used_at is not None
        assert stored.sign_count == enrolled.sign_count


def test_passkey_sign_in_follows_a_safe_next_only(client, enrolled):
    options = post_json(client, "/login/passkey/options").json
    answer = post_json(client, "/login/passkey?next=//evil.example", enrolled.get(options))
    assert answer.json == {"url": "/profile"}


def test_registration_needs_a_fresh_sign_in(client, auth, user, clock, authenticator):
    auth.login()
    clock.advance(601)
    response = post_json(client, "/account/passkeys/options")
    assert response.status_code == 401
    assert response.json["url"].startswith("/account/reauthenticate")


def test_a_challenge_is_used_once(client, enrolled):
    options = post_json(client, "/login/passkey/options").json
    assertion = enrolled.get(options)
    assert post_json(client, "/login/passkey", assertion).status_code == 200
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert post_json(client, "/login/passkey", assertion).status_code == 400


def test_a_challenge_belongs_to_the_browser_that_asked(app, client, enrolled):
    options = post_json(client, "/login/passkey/options").json
    other = app.test_client()
    assert post_json(other, "/login/passkey", enrolled.get(options)).status_code == 400
    assert other.get("/session").json == {}


def test_an_expired_challenge_is_refused(client, clock, enrolled):
    options = post_json(client, "/login/passkey/options").json
    clock.advance(301)
    assert post_json(client, "/login/passkey", enrolled.get(options)).status_code == 400


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:8001"])
def test_an_assertion_made_for_another_origin_is_refused(client, enrolled, origin):
    assert sign_in(client, enrolled, origin=origin).status_code == 400
    assert client.get("/session").json == {}


def test_v2_7_user_verification_is_required(client, enrolled):
    assert sign_in(client, enrolled, flags=UP).status_code == 400


def test_a_cloned_credential_with_a_stale_counter_is_refused(app, client, enrolled):
    with app.app_context():
        stored = get_db().query(Passkey).one()
        stored.sign_count = enrolled.sign_count + 10  # the original has been used since
        get_db().commit()
    response = sign_in(client, enrolled)
    assert response.status_code == 400 and client.get("/session").json == {}


def test_a_removed_passkey_is_refused(app, client, auth, enrolled):
    auth.login()
    with app.app_context():
        passkey_id = get_db().query(Passkey).one().id
    token = csrf_token(client, "/account/security")
    removed = client.post(f"/account/passkeys/{passkey_id}/remove", data={"csrf_token": token})
    assert removed.status_code == 303
    auth.logout()
    assert sign_in(client, enrolled).status_code == 400


def test_removing_a_passkey_needs_a_fresh_sign_in(app, client, auth, clock, enrolled):
    auth.login()
    clock.advance(601)
    with app.app_context():
        passkey_id = get_db().query(Passkey).one().id
    token = csrf_token(client, "/account/security")
    response = client.post(f"/account/passkeys/{passkey_id}/remove", data={"csrf_token": token})
    assert "/account/reauthenticate" in response.headers["Location"]
    with app.app_context():
        assert get_db().query(Passkey).count() == 1


def test_rename(app, client, auth, enrolled):
    auth.login()
    with app.app_context():
        passkey_id = get_db().query(Passkey).one().id
    token = csrf_token(client, "/account/security")
    client.post(
        f"/account/passkeys/{passkey_id}/rename", data={"csrf_token": token, "name": "Work"}
    )
    assert 'value="Work"' in client.get("/account/security").get_data(as_text=True)


def test_a_passkey_is_the_fresh_re_authentication(client, auth, clock, enrolled):
    auth.login()
    clock.advance(601)
    token = csrf_token(client, "/account/security")
    assert client.post("/account/totp/setup", data={"csrf_token": token}).status_code == 303
    answer = sign_in(client, enrolled)
    assert answer.status_code == 200
    assert client.get("/session").json["method"] == "password"  # still the same sign-in
    token = csrf_token(client, "/account/security")
    assert client.post("/account/totp/setup", data={"csrf_token": token}).status_code == 200


def test_another_accounts_passkey_cannot_re_authenticate(app, client, enrolled):
    from webapp.users import create_user

    with app.app_context():
        create_user(get_db(), "bob", "another good password", "Bob", None)
    AuthActions(client).login("bob", "another good password")
    assert sign_in(client, enrolled).status_code == 403
    assert client.get("/session").json["user"]["username"] == "bob"


def test_session_method_is_the_same_on_the_fast_path_and_the_route(app, client, enrolled):
    sign_in(client, enrolled)
    fast = client.get("/session").json
    poll_fast_path = app.wsgi_app
    app.wsgi_app = poll_fast_path.wsgi_app  # the Flask route alone
    try:
        route = client.get("/session").json
    finally:
        app.wsgi_app = poll_fast_path
    assert fast == route and fast["method"] == "passkey"
    assert set(fast) == {"user", "expires", "method"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"BASE_URL": "example.com"}, "WEBAPP_BASE_URL must be the site's address"),
        ({"BASE_URL": "https://example.com/app"}, "WEBAPP_BASE_URL must be the site's address"),
        ({"BASE_URL": "https://www.example.com", "RP_ID": "evil.example"}, "WEBAPP_RP_ID"),
    ],
)
def test_base_url_and_rp_id_are_checked_at_start(settings, message):
    from webapp.config import ConfigError, defaults, validate

    with pytest.raises(ConfigError, match=message):
        validate({**defaults(), **settings})


def test_rp_id_defaults_to_the_host_of_base_url_and_may_be_a_parent_domain():
    from webapp.config import defaults, relying_party_id, validate

    assert relying_party_id(defaults()) == "127.0.0.1"
    config = {**defaults(), "BASE_URL": "https://www.example.com", "RP_ID": "example.com"}
    validate(config)
    assert relying_party_id(config) == "example.com"
