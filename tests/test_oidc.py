"""Sign-in through a real OpenID provider (oidc-provider, tests/support/oidc/), end to end with
the Flask client: accounts, linking, back-channel and RP-initiated logout, key rotation, and
every failure ending on the sign-in page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD, AuthActions, FakeClock, csrf_token
from oidc_flows import ProviderBrowser
from sqlalchemy import select
from support.oidc_provider import OidcProvider, oidc_provider
from support.ports import free_port

from webapp.db import get_db
from webapp.models import OidcIdentity, SignInEvent, User, UserSession
from webapp.users import create_user


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with oidc_provider() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    """Tokens from a real provider carry real times: the app's clock starts at the real one."""
    return FakeClock(time.time())


@pytest.fixture
def app_config(app_config: dict[str, Any], provider: OidcProvider) -> dict[str, Any]:
    down = f"http://127.0.0.1:{free_port()}"
    return app_config | {
        "OIDC_PROVIDERS": "test,down",
        **provider.settings("test"),
        "OIDC_DOWN_ISSUER": down,
        "OIDC_DOWN_CLIENT_ID": "webapp",
        "OIDC_DOWN_CLIENT_SECRET": "secret",
    }


@pytest.fixture
def visitor(client: FlaskClient, provider: OidcProvider) -> ProviderBrowser:
    return ProviderBrowser(client, provider.issuer)


def user_named(app: Flask, username: str) -> User | None:
    with app.app_context():
        return get_db().scalar(select(User).where(User.username == username))


def signed_in_as(client: FlaskClient) -> str | None:
    user = client.get("/session", headers={"Accept": "application/json"}).get_json()
    return user["user"]["username"] if user else None


def test_the_sign_in_page_links_each_provider_with_its_label(client: FlaskClient) -> None:
    page = client.get("/login?next=/account/sessions").get_data(as_text=True)
    assert 'href="/login/test?next=/account/sessions">Test ID</a>' in page
    assert 'href="/login/down?next=/account/sessions">Down</a>' in page


def test_the_redirect_asks_for_code_with_pkce_state_and_nonce(client: FlaskClient) -> None:
    location = client.get("/login/test").headers["Location"]
    for part in ("response_type=code", "code_challenge_method=S256", "state=", "nonce="):
        assert part in location
    assert "scope=openid+profile+email" in location
    cookie = client.get_cookie("oidc-flow", path="/login/test/callback")
    assert cookie is not None and cookie.http_only and cookie.path == "/login/test/callback"
    assert client.get_cookie("session") is None  # an anonymous visitor stores nothing


def test_a_first_sign_in_creates_an_account_and_keeps_next(
    app: Flask, visitor: ProviderBrowser
) -> None:
    visitor.client.get("/login/test?next=/account/sessions")
    answer = visitor.sign_in("carol", path="/login/test?next=/account/sessions")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/account/sessions"
    assert signed_in_as(visitor.client) == "carol"
    user = user_named(app, "carol")
    assert user is not None
    assert (user.name, user.email) == ("User carol", "carol@example.test")
    assert user.password_hash.startswith("!")
    with app.app_context():
        event = get_db().scalar(select(SignInEvent).where(SignInEvent.user_id == user.id))
        assert event is not None and event.method == "oidc:test"


def test_the_next_sign_in_finds_the_same_account(app: Flask, visitor: ProviderBrowser) -> None:
    visitor.sign_in("dave")
    visitor.client.post("/logout", data={"csrf_token": csrf_token(visitor.client)})
    second = ProviderBrowser(visitor.client, visitor.issuer)  # a fresh provider session
    second.sign_in("dave")
    assert signed_in_as(visitor.client) == "dave"
    with app.app_context():
        assert len(get_db().scalars(select(User)).all()) == 1


def test_an_existing_username_or_email_is_never_taken_over(
    app: Flask, visitor: ProviderBrowser
) -> None:
    with app.app_context():
        create_user(get_db(), "erin", PASSWORD, "Erin", "erin@example.test")
    visitor.sign_in("erin")
    assert signed_in_as(visitor.client) == "erin-2"
    newcomer = user_named(app, "erin-2")
    assert newcomer is not None and newcomer.email == "erin@example.test"
    owner = user_named(app, "erin")
    with app.app_context():
        identity = get_db().scalar(select(OidcIdentity))
        assert identity is not None and owner is not None and identity.user_id != owner.id


def test_an_unverified_email_is_not_kept(app: Flask, visitor: ProviderBrowser) -> None:
    visitor.sign_in("unverified-fay")
    user = user_named(app, "unverified-fay")
    assert user is not None and user.email is None


def test_an_account_made_by_a_provider_has_no_password(
    app: Flask, visitor: ProviderBrowser, auth: AuthActions
) -> None:
    visitor.sign_in("gina")
    visitor.client.post("/logout", data={"csrf_token": csrf_token(visitor.client)})
    assert auth.login("gina", "!").status_code == 401


def test_a_denied_consent_ends_on_the_sign_in_page(visitor: ProviderBrowser) -> None:
    answer = visitor.sign_in("hank", consent=False)
    assert answer.status_code == 400
    assert "did not sign you in: you declined." in answer.get_data(as_text=True)
    assert signed_in_as(visitor.client) is None


def test_a_callback_without_its_flow_cookie_is_refused(
    visitor: ProviderBrowser, caplog: pytest.LogCaptureFixture
) -> None:
    start = visitor.client.get("/login/test").headers["Location"]
    back = visitor.authorize(start, "ivan")
    visitor.client.delete_cookie("oidc-flow", path="/login/test/callback")
    answer = visitor.app_get(back)
    assert answer.status_code == 400
    assert "expired or was started elsewhere" in answer.get_data(as_text=True)
    assert '"reason": "bad_state"' in caplog.text


def test_a_forged_state_is_refused(visitor: ProviderBrowser) -> None:
    start = visitor.client.get("/login/test").headers["Location"]
    back = visitor.authorize(start, "ivan")
    answer = visitor.app_get(back.replace("state=", "state=x"))
    assert answer.status_code == 400
    assert signed_in_as(visitor.client) is None


def test_an_answer_naming_another_issuer_is_refused(visitor: ProviderBrowser) -> None:
    start = visitor.client.get("/login/test").headers["Location"]
    back = visitor.authorize(start, "ivan")
    assert "iss=" in back
    answer = visitor.app_get(back.replace("iss=", "iss=https%3A%2F%2Fevil.test&x="))
    assert answer.status_code == 400
    assert "did not come from Test ID" in answer.get_data(as_text=True)


def test_a_provider_that_cannot_be_reached_ends_on_the_sign_in_page(
    client: FlaskClient,
) -> None:
    answer = client.get("/login/down")
    assert answer.status_code == 400
    assert "Down could not be reached. Try again later." in answer.get_data(as_text=True)


def test_an_id_token_from_a_skewed_clock_is_refused(
    visitor: ProviderBrowser, clock: FakeClock
) -> None:
    start = visitor.client.get("/login/test").headers["Location"]
    back = visitor.authorize(start, "jill")
    clock.advance(3 * 3600)  # this server's clock hours ahead: the ID token looks expired
    answer = visitor.app_get(back)
    assert answer.status_code == 400
    assert "out of date" in answer.get_data(as_text=True)
    assert signed_in_as(visitor.client) is None


def test_new_signing_keys_are_fetched_when_the_provider_rotates(
    visitor: ProviderBrowser, provider: OidcProvider, clock: FakeClock
) -> None:
    visitor.sign_in("kim")
    visitor.client.post("/logout", data={"csrf_token": csrf_token(visitor.client)})
    provider.rotate_keys()
    clock.advance(30)  # past KEY_REFRESH_SECONDS since the keys were fetched
    ProviderBrowser(visitor.client, visitor.issuer).sign_in("kim")
    assert signed_in_as(visitor.client) == "kim"


def test_providers_lists_every_way_in(client: FlaskClient) -> None:
    listed = client.get("/providers").get_json()
    assert listed["credentials"]["type"] == "credentials"
    assert listed["test"] == {
        "id": "test",
        "name": "Test ID",
        "type": "oidc",
        "signinUrl": "http://localhost/login/test",
        "callbackUrl": "http://localhost/login/test/callback",
    }
    assert set(listed) == {"credentials", "test", "down"}


def test_back_channel_logout_ends_the_provider_session_s_sessions_only(
    app: Flask, visitor: ProviderBrowser, provider: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    visitor.sign_in("lena")
    other_client = app.test_client()
    other = ProviderBrowser(other_client, provider.issuer)
    other.sign_in("lena")
    provider.logout_tokens()
    visitor.end_provider_session()  # lena signs out at the provider in the first browser
    tokens = provider.logout_tokens()
    assert len(tokens) == 1
    answer = visitor.client.post("/login/test/backchannel-logout", data={"logout_token": tokens[0]})
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert signed_in_as(visitor.client) is None
    assert signed_in_as(other_client) == "lena"
    assert '"event": "oidc_backchannel_logout"' in caplog.text
    replay = other_client.post("/login/test/backchannel-logout", data={"logout_token": tokens[0]})
    assert replay.status_code == 400
    assert signed_in_as(other_client) == "lena"


def test_back_channel_logout_refuses_what_is_not_a_logout_token(
    visitor: ProviderBrowser,
) -> None:
    visitor.sign_in("mona")
    for token in ("", "not.a.token", "a" * 300):
        answer = visitor.client.post("/login/test/backchannel-logout", data={"logout_token": token})
        assert answer.status_code == 400
    assert signed_in_as(visitor.client) == "mona"


def test_signing_out_here_ends_the_provider_session_too(
    app: Flask, visitor: ProviderBrowser, provider: OidcProvider
) -> None:
    visitor.sign_in("nora")
    answer = visitor.client.post("/logout", data={"csrf_token": csrf_token(visitor.client)})
    target = answer.headers["Location"]
    assert target.startswith(f"{provider.issuer}/session/end?id_token_hint=")
    assert signed_in_as(visitor.client) is None
    back = visitor.end_provider_session(target)
    assert back == "http://localhost/login"
    # The provider forgot the browser: the next sign-in asks for the account again.
    start = visitor.client.get("/login/test").headers["Location"]
    page = visitor.follow_at_provider(start)
    assert not isinstance(page, str) and 'name="login"' in page.text


def test_a_password_user_links_and_unlinks_a_provider(
    app: Flask, visitor: ProviderBrowser, auth: AuthActions
) -> None:
    with app.app_context():
        create_user(get_db(), "olga", PASSWORD)
    auth.login("olga")
    page = visitor.client.get("/account/providers").get_data(as_text=True)
    assert "Test ID: not linked" in page
    token = csrf_token(visitor.client)
    start = visitor.client.post("/account/providers/test/link", data={"csrf_token": token})
    back = visitor.authorize(start.headers["Location"], "olga-at-provider")
    assert visitor.app_get(back).headers["Location"] == "/account/providers"
    assert "Test ID: linked" in visitor.client.get("/account/providers").get_data(as_text=True)
    visitor.client.post("/logout", data={"csrf_token": csrf_token(visitor.client)})
    ProviderBrowser(visitor.client, visitor.issuer).sign_in("olga-at-provider")
    assert signed_in_as(visitor.client) == "olga"
    token = csrf_token(visitor.client)
    visitor.client.post("/account/providers/test/unlink", data={"csrf_token": token})
    with app.app_context():
        assert get_db().scalar(select(OidcIdentity)) is None


def test_unlinking_the_last_way_in_is_refused(app: Flask, visitor: ProviderBrowser) -> None:
    visitor.sign_in("pia")
    token = csrf_token(visitor.client)
    answer = visitor.client.post("/account/providers/test/unlink", data={"csrf_token": token})
    assert answer.status_code == 303
    page = visitor.client.get("/account/providers").get_data(as_text=True)
    assert "your only way to sign in" in page
    with app.app_context():
        assert get_db().scalar(select(OidcIdentity)) is not None


def test_a_provider_account_linked_elsewhere_is_not_moved(
    app: Flask, visitor: ProviderBrowser, auth: AuthActions
) -> None:
    visitor.sign_in("quinn")
    visitor.client.post("/logout", data={"csrf_token": csrf_token(visitor.client)})
    with app.app_context():
        create_user(get_db(), "rita", PASSWORD)
    auth.login("rita")
    token = csrf_token(visitor.client)
    start = visitor.client.post("/account/providers/test/link", data={"csrf_token": token})
    visitor.app_get(visitor.authorize(start.headers["Location"], "quinn"))
    page = visitor.client.get("/account/providers").get_data(as_text=True)
    assert "already signs in another user" in page
    with app.app_context():
        rows = get_db().scalars(select(UserSession)).all()
        assert {row.oidc_provider for row in rows} <= {None, "test"}


def test_a_boosted_sign_out_is_sent_to_the_provider_with_hx_redirect(
    visitor: ProviderBrowser, provider: OidcProvider
) -> None:
    visitor.sign_in("sam")
    answer = visitor.client.post(
        "/logout", data={"csrf_token": csrf_token(visitor.client)}, headers={"HX-Request": "true"}
    )
    assert answer.status_code == 200
    assert answer.headers["HX-Redirect"].startswith(f"{provider.issuer}/session/end?")
    assert signed_in_as(visitor.client) is None


def test_a_password_session_signs_out_here_only(client: FlaskClient, auth: AuthActions) -> None:
    auth.login()
    assert auth.logout().headers["Location"] == "/login?reason=signed-out"


# an account with no password: a first password, re-authentication at the provider ----------

NEW_PASSWORD = "a first password of mine"


def set_first_password(client: FlaskClient):  # type: ignore[no-untyped-def]
    return client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(client, "/account/password"),
            "new_password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )


def not_fresh(app: Flask, clock: FakeClock) -> None:
    """Past the fresh window, without moving the app's clock far from the provider's."""
    app.config["FRESH_TIMEOUT"] = 5
    clock.advance(6)


def test_an_account_made_by_a_provider_sets_a_first_password(
    app: Flask, visitor: ProviderBrowser, auth: AuthActions
) -> None:
    visitor.sign_in("hana")
    page = visitor.client.get("/account/password").get_data(as_text=True)
    assert "Set a password" in page and 'name="current_password"' not in page
    answer = set_first_password(visitor.client)
    assert answer.status_code == 303 and answer.headers["Location"] == "/account/sessions"
    assert "Your password has been set" in visitor.client.get("/account/sessions").get_data(
        as_text=True
    )
    page = visitor.client.get("/account/password").get_data(as_text=True)
    assert 'name="current_password"' in page  # from now on, a change asks for it
    visitor.client.post("/logout", data={"csrf_token": csrf_token(visitor.client)})
    assert AuthActions(app.test_client()).login("hana", NEW_PASSWORD).status_code == 303


def test_a_first_password_still_follows_the_policy(visitor: ProviderBrowser) -> None:
    visitor.sign_in("ivan")
    short = visitor.client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(visitor.client, "/account/password"),
            "new_password": "short",
            "confirm": "short",
        },
    )
    assert short.status_code == 400
    assert 'name="current_password"' not in short.get_data(as_text=True)


def test_an_account_without_a_password_confirms_it_is_you_at_its_provider(
    app: Flask, visitor: ProviderBrowser, clock: FakeClock
) -> None:
    """Past the fresh window the password page sends the user to confirm it is them; with no
    password, that is a new sign-in at a linked provider (asked again: prompt=login, and
    max_age for its auth_time), which makes the session fresh on a new id and carries on."""
    visitor.sign_in("jade")
    not_fresh(app, clock)
    answer = visitor.client.get("/account/password")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/account/reauthenticate")
    page = visitor.client.get(answer.headers["Location"]).get_data(as_text=True)
    assert 'name="password"' not in page and "has no password" in page
    assert 'action="/account/reauthenticate/test"' in page and ">Test ID</button>" in page
    before = visitor.client.get_cookie("session").value
    start = visitor.client.post(
        "/account/reauthenticate/test",
        data={"csrf_token": csrf_token(visitor.client), "next": "/account/password"},
    )
    assert start.status_code == 302
    assert "prompt=login" in start.headers["Location"]
    assert "max_age=300" in start.headers["Location"]
    back = visitor.app_get(visitor.authorize(start.headers["Location"], "jade"))
    assert back.status_code == 303 and back.headers["Location"] == "/account/password"
    assert visitor.client.get_cookie("session").value != before
    assert set_first_password(visitor.client).status_code == 303


def test_re_authentication_at_the_provider_must_be_the_same_person_just_now(
    app: Flask, visitor: ProviderBrowser, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    visitor.sign_in("kim")
    not_fresh(app, clock)
    token = csrf_token(visitor.client)
    unlinked = visitor.client.post("/account/reauthenticate/down", data={"csrf_token": token})
    assert unlinked.status_code == 404
    start = visitor.client.post("/account/reauthenticate/test", data={"csrf_token": token})
    visitor.http.cookies.clear()  # someone else signs in at the provider
    back = visitor.app_get(visitor.authorize(start.headers["Location"], "not-kim"))
    assert back.status_code == 303
    assert back.headers["Location"].startswith("/account/reauthenticate")
    assert "does not sign you in here" in visitor.client.get(back.headers["Location"]).get_data(
        as_text=True
    )
    assert visitor.client.get("/account/password").status_code == 302  # still not fresh
    assert signed_in_as(visitor.client) == "kim"

    # A provider that did not ask again (an old auth_time) does not make the session fresh.
    from webapp.signin import oidc

    start = visitor.client.post("/account/reauthenticate/test", data={"csrf_token": token})
    monkeypatch.setattr(oidc, "REAUTH_MAX_AGE", -oidc.LEEWAY - 1)  # any auth_time is old
    visitor.http.cookies.clear()
    back = visitor.app_get(visitor.authorize(start.headers["Location"], "kim"))
    assert back.headers["Location"].startswith("/account/reauthenticate")
    assert "did not ask for your sign-in again" in visitor.client.get(
        back.headers["Location"]
    ).get_data(as_text=True)
    assert visitor.client.get("/account/password").status_code == 302
