"""The live widget's server side: state tokens and 204, the expiry warning and keepalive,
required pages, boosted navigation, and profile updates (next-auth's update())."""

from __future__ import annotations

import re

import pytest
from helpers import PASSWORD, csrf_token, store_files

from webapp.widget.state import WARNING_SECONDS

HTMX = {"HX-Request": "true"}


def poll(client, token=None, **headers):
    if token is not None:
        headers["X-Session-State"] = token
    return client.get("/session", headers={**HTMX, **headers})


def token_of(response) -> str:
    match = re.search(r'data-state="([^"]*)"', response.get_data(as_text=True))
    assert match, "no state token"
    return match.group(1)


def test_unchanged_state_is_answered_204_with_nothing_to_swap(client, auth, user):
    auth.login()
    first = poll(client)
    assert first.status_code == 200
    again = poll(client, token_of(first))
    assert again.status_code == 204
    assert again.get_data() == b""
    assert again.headers["Cache-Control"] == "private, no-store"
    assert "X-Session-State" in again.headers["Vary"]


def test_anonymous_unchanged_state_is_204_too(client):
    assert poll(client, token_of(poll(client))).status_code == 204


def test_a_stale_token_gets_the_new_fragment(client, auth, user):
    anonymous = token_of(poll(client))
    auth.login()
    response = poll(client, anonymous)
    assert response.status_code == 200
    assert 'data-session-status="authenticated"' in response.get_data(as_text=True)


def test_expires_moving_alone_does_not_change_the_token(app, client, auth, user, clock):
    auth.login()
    token = token_of(poll(client))
    clock.advance(app.config["TOUCH_INTERVAL"])
    client.get("/profile")  # activity: expires moves on
    assert poll(client, token).status_code == 204


def test_loading_widget_carries_no_token(client):
    html = client.get("/").get_data(as_text=True)
    assert 'data-session-status="loading"' in html and 'data-state=""' in html


def test_widget_knows_when_the_session_ends(app, client, auth, user, clock):
    auth.login()
    clock.advance(100)
    html = poll(client).get_data(as_text=True)
    assert f'data-expires-in="{app.config["IDLE_TIMEOUT"] - 100}"' in html


# expiry warning and "Stay signed in" ---------------------------------------------------------


def test_warning_appears_two_minutes_before_the_end(app, client, auth, user, clock):
    auth.login()
    clock.advance(app.config["IDLE_TIMEOUT"] - WARNING_SECONDS - 1)
    first = poll(client)
    assert "session-warning" not in first.get_data(as_text=True)
    clock.advance(1)
    warned = poll(client, token_of(first))
    assert warned.status_code == 200  # the warning changed the state
    html = warned.get_data(as_text=True)
    assert "Stay signed in" in html and 'hx-post="/session/keepalive"' in html


def test_stay_signed_in_extends_the_session(app, client, auth, user, clock):
    auth.login()
    token = csrf_token(client, "/profile")
    clock.advance(app.config["IDLE_TIMEOUT"] - 30)
    before = client.get("/session").json["expires"]
    assert (
        client.post("/session/keepalive", data={"csrf_token": token}, headers=HTMX).status_code
        == 200
    )
    clock.advance(60)  # past the old end
    assert client.get("/session").json["expires"] > before


def test_keepalive_without_javascript_redirects_back(client, auth, user):
    auth.login()
    token = csrf_token(client, "/profile")
    response = client.post("/session/keepalive", data={"csrf_token": token, "next": "/profile"})
    assert (response.status_code, response.headers["Location"]) == (303, "/profile")


def test_keepalive_needs_csrf_and_a_session(client, auth, user):
    assert client.post("/session/keepalive", headers=HTMX).status_code == 400
    token = csrf_token(client)
    response = client.post("/session/keepalive", data={"csrf_token": token}, headers=HTMX)
    assert response.status_code == 401 and "HX-Redirect" in response.headers


def test_near_the_absolute_end_the_warning_offers_no_extension(app_config, clock):
    from helpers import AuthActions

    from webapp import create_app
    from webapp.db import get_db
    from webapp.users import create_user

    app = create_app({**app_config, "IDLE_TIMEOUT": 600, "ABSOLUTE_TIMEOUT": 700})
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()
    AuthActions(client).login()
    clock.advance(590)
    client.get("/profile")  # active: the absolute end (700) comes first
    html = poll(client).get_data(as_text=True)
    assert "session-warning" in html and "Stay signed in" not in html
    assert "Sign in again" in html


# required pages, boosted navigation --------------------------------------------------------------


def test_required_page_poll_sends_a_signed_out_browser_to_sign_in(client):
    response = poll(
        client,
        **{"X-Session-Required": "true", "HX-Current-URL": "http://localhost/account/sessions"},
    )
    assert response.headers["HX-Redirect"] == "/login?next=%2Faccount%2Fsessions"


def test_protected_pages_mark_the_body_as_required(client, auth, user):
    auth.login()
    assert "data-session-required" in client.get("/profile").get_data(as_text=True)
    assert "data-session-required" not in client.get("/").get_data(as_text=True)


def test_boosted_navigation_renders_the_known_state_not_loading(client, auth, user):
    auth.login()
    html = client.get("/", headers={**HTMX, "HX-Boosted": "true"}).get_data(as_text=True)
    assert 'data-session-status="authenticated"' in html and "<html" in html


def test_boosted_session_link_gets_json(client):
    response = client.get("/session", headers={**HTMX, "HX-Boosted": "true"})
    assert response.json == {}


def test_polls_with_tokens_still_write_nothing(app, client, auth, user, clock):
    auth.login()
    token = token_of(poll(client))
    before = store_files(app)
    for _ in range(50):
        clock.advance(5)
        response = poll(client, token)
        assert "Set-Cookie" not in response.headers
    assert store_files(app) == before


# profile: next-auth's update() ----------------------------------------------------------------


def save_profile(client, **fields):
    data = {"name": "Alice Example", "email": "alice@example.com", **fields}
    return client.post(
        "/account/profile", data={"csrf_token": csrf_token(client, "/account/profile"), **data}
    )


def test_profile_change_shows_in_session_and_in_every_widget(app, client, auth, user):
    auth.login()
    other_tab_token = token_of(poll(client))
    response = save_profile(client, name="Alice Liddell")
    assert (response.status_code, response.headers["Location"]) == (303, "/account/profile")
    assert client.get("/session").json["user"]["name"] == "Alice Liddell"
    changed = poll(client, other_tab_token)
    assert changed.status_code == 200 and "Welcome, Alice Liddell!" in changed.get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "Enter your name"),
        ({"email": "nope"}, "Email must"),
        ({"name": "x" * 101}, "at most 100"),
    ],
)
def test_profile_refuses_bad_input(client, auth, user, fields, message):
    auth.login()
    response = save_profile(client, **fields)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert client.get("/session").json["user"]["name"] == "Alice Example"


def test_v3_7_1_email_change_needs_a_recent_sign_in(app, client, auth, user, clock):
    auth.login()
    clock.advance(app.config["FRESH_TIMEOUT"])
    response = save_profile(client, email="new@example.com")
    assert response.headers["Location"].startswith("/account/reauthenticate")
    assert client.get("/session").json["user"]["email"] == "alice@example.com"
    assert save_profile(client, name="Just A Name").status_code == 303  # a name needs no password
    assert client.get("/session").json["user"]["name"] == "Just A Name"


def test_email_can_be_removed(client, auth, user):
    auth.login()
    save_profile(client, email="")
    assert client.get("/session").json["user"]["email"] is None
