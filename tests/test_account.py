"""The account pages (ASVS V3.3.3, V3.3.4, V3.7.1): sessions, revocation, password, freshness."""

from __future__ import annotations

import re

import pytest
from helpers import PASSWORD, AuthActions, csrf_token, session_cookie, store_files

from webapp.db import get_db
from webapp.models import RememberToken, UserSession
from webapp.users import authenticate

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def second(app, user):
    """Another browser signed in as the same user."""
    browser = app.test_client()
    AuthActions(browser).login()
    return browser


def session_refs(client) -> list[str]:
    html = client.get("/account/sessions").get_data(as_text=True)
    return re.findall(r'action="/account/sessions/([\w-]+)/revoke"', html)


def this_device_ref(client) -> str:
    html = client.get("/account/sessions").get_data(as_text=True)
    row = re.search(
        r'<li class="device this-device">.*?/account/sessions/([\w-]+)/revoke', html, re.S
    )
    assert row
    return row.group(1)


def post(client, path, **data):
    return client.post(path, data={"csrf_token": csrf_token(client), **data})


def test_account_pages_need_sign_in(client):
    for path in ("/account/sessions", "/account/password", "/account/reauthenticate"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=%2Faccount%2F")


def test_v3_3_4_sessions_page_lists_each_session_with_device_and_history(
    client, auth, user, second
):
    auth.login()
    client.get("/", headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"})
    html = client.get("/account/sessions").get_data(as_text=True)
    assert len(session_refs(client)) == 2
    assert html.count("This device") == 1
    assert "127.0.0.1" in html
    assert "Recent sign-ins" in html and "Signed in" in html


def test_v3_3_4_device_is_described_from_the_user_agent(app, user):
    browser = app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0"
    )
    AuthActions(browser).login()
    assert "Firefox 130 on Windows" in browser.get("/account/sessions").get_data(as_text=True)


def test_v3_3_4_ending_one_session_needs_the_password(client, auth, user, second):
    auth.login()
    mine = this_device_ref(client)
    other = next(ref for ref in session_refs(client) if ref != mine)
    assert (
        post(client, f"/account/sessions/{other}/revoke", password="wrong one!").status_code == 401
    )
    assert second.get("/session").json["user"]["username"] == "alice"
    response = post(client, f"/account/sessions/{other}/revoke", password=PASSWORD)
    assert (response.status_code, response.headers["Location"]) == (303, "/account/sessions")
    assert second.get("/session").json == {}  # dead at its next request, a poll
    assert client.get("/session").json["user"]["username"] == "alice"


def test_v3_3_4_ending_this_device_signs_out(client, auth, user):
    auth.login()
    response = post(
        client, f"/account/sessions/{this_device_ref(client)}/revoke", password=PASSWORD
    )
    assert response.headers["Location"] == "/login?reason=signed-out"
    assert client.get("/session").json == {}


def test_v3_3_4_cannot_end_someone_elses_session(app, client, auth, user):
    from webapp.users import create_user

    with app.app_context():
        create_user(get_db(), "bob", PASSWORD)
    bob = app.test_client()
    AuthActions(bob).login("bob")
    bobs = this_device_ref(bob)
    auth.login()
    assert post(client, f"/account/sessions/{bobs}/revoke", password=PASSWORD).status_code == 404
    assert bob.get("/session").json["user"]["username"] == "bob"


def test_v3_3_4_sign_out_everywhere_else(app, client, auth, user, second):
    auth.login(remember=True)
    third = app.test_client()
    AuthActions(third).login(remember=True)
    their_token = third.get_cookie("remember").value
    response = post(client, "/account/sessions/revoke-others", password=PASSWORD)
    assert response.status_code == 303
    assert second.get("/session").json == {} and third.get("/session").json == {}
    assert client.get("/session").json["user"]["username"] == "alice"
    replay = app.test_client()
    replay.set_cookie("remember", their_token)
    assert replay.get("/profile").status_code == 302  # their remember-me token is gone too
    with app.app_context():
        assert get_db().query(RememberToken).count() == 1  # this device's is kept
    assert len(session_refs(client)) == 1


def test_revoke_others_with_a_wrong_password_changes_nothing(client, auth, user, second, clock):
    auth.login()
    assert post(client, "/account/sessions/revoke-others", password="nope nope").status_code == 401
    clock.advance(601)  # past FRESH_TIMEOUT: no password is no confirmation
    assert post(client, "/account/sessions/revoke-others").status_code == 400
    assert second.get("/session").json != {}


def test_v3_3_4_revoked_request_in_flight_cannot_write_the_session_back(app, client, auth, user):
    """A request that loaded the session before revocation must not store it afterwards."""
    from flask import session

    auth.login()
    with client:
        client.get("/")  # opens the session
        with app.app_context():
            ref = get_db().query(UserSession).one()
            from webapp.sessions import index as session_index

            session_index.revoke([ref])
        session["_last_active"] = 0.0  # the in-flight request modifies its session
        interface = app.session_interface
        response = app.response_class()
        interface.save_session(app, session._get_current_object(), response)
    assert store_files(app) == {}
    assert client.get("/session").json == {}


def test_v3_3_4_revoked_between_the_write_check_and_the_write_is_not_written_back(
    app, client, auth, user, monkeypatch
):
    """The revocation lands after the request checked the index and before it wrote: the
    request looks again once it has written, and takes its write back."""
    from flask import session

    from webapp.sessions import index as session_index

    auth.login()
    interface = app.session_interface
    upsert = interface._upsert_session

    def revoked_first(*args):
        with app.app_context():
            session_index.revoke(get_db().query(UserSession).all())
        upsert(*args)

    with client:
        client.get("/")
        session["_last_active"] = 0.0  # the in-flight request modifies its session
        monkeypatch.setattr(interface, "_upsert_session", revoked_first)
        interface.save_session(app, session._get_current_object(), app.response_class())
    assert store_files(app) == {}
    assert client.get("/session").json == {}


def test_v3_3_4_a_write_that_lands_while_a_revocation_commits_is_removed(app, client, auth, user):
    """An in-flight request checks the index (its row is still there), then writes the session
    back just after revoke() deleted the entry and before it committed: revoke deletes the
    entries again once the rows are gone."""
    from flask import session
    from sqlalchemy import event

    from webapp.sessions import index as session_index

    auth.login()
    interface = app.session_interface
    with client:
        client.get("/")
        in_flight = session._get_current_object()  # loaded before the revocation
    with app.test_request_context():
        db = get_db()

        def written_back(_session):
            assert store_files(app) == {}  # revoke's first pass
            store_id = interface._get_store_id(in_flight.sid)
            interface._upsert_session(app.permanent_session_lifetime, in_flight, store_id)
            assert store_files(app) != {}

        event.listen(db, "before_commit", written_back, once=True)
        session_index.revoke(db.query(UserSession).all())
    assert store_files(app) == {}
    assert client.get("/session").json == {}


# password change (V3.3.3) and freshness (V3.7.1) ------------------------------------------------


def change_password(client, current=PASSWORD, new=NEW_PASSWORD, confirm=None):
    return post(
        client,
        "/account/password",
        current_password=current,
        new_password=new,
        confirm=new if confirm is None else confirm,
    )


def test_v3_3_3_password_change_ends_other_sessions_and_remember_tokens(
    app, client, auth, user, second
):
    auth.login(remember=True)
    before = session_cookie(client)
    response = change_password(client)
    assert (response.status_code, response.headers["Location"]) == (303, "/account/sessions")
    assert second.get("/session").json == {}
    assert client.get("/session").json["user"]["username"] == "alice"
    with app.app_context():
        assert authenticate(get_db(), "alice", NEW_PASSWORD) is not None
        assert get_db().query(RememberToken).count() == 0
    assert session_cookie(client) != before


def test_v3_2_1_password_change_rotates_this_session_id(app, client, auth, user):
    auth.login()
    before = session_cookie(client)
    change_password(client)
    replay = app.test_client()
    replay.set_cookie("session", before)
    assert replay.get("/session").json == {}


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"current": "not my password"}, 401, "That password is not right."),
        ({"new": "short", "confirm": "short"}, 400, "at least 12"),
        ({"confirm": "something different"}, 400, "Passwords differ"),
        ({"new": "qwerty123456"}, 400, "one of the most common ones"),
        ({"new": "alicealice12"}, 400, "must not be your username"),
        ({"new": PASSWORD}, 400, "That is already your password"),
    ],
)
def test_password_change_refusals_change_nothing(app, client, auth, user, fields, status, message):
    auth.login()
    response = change_password(client, **fields)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert authenticate(get_db(), "alice", PASSWORD) is not None


def test_v3_7_1_password_change_needs_a_recent_sign_in(app, client, auth, user, clock):
    auth.login()
    clock.advance(app.config["FRESH_TIMEOUT"])
    response = client.get("/account/password")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/reauthenticate?next=/account/password"
    assert change_password(client).status_code == 303  # redirected, not changed
    with app.app_context():
        assert authenticate(get_db(), "alice", PASSWORD) is not None


def test_v3_7_1_reauthentication_carries_on_and_rotates_the_session(app, client, auth, user, clock):
    auth.login()
    clock.advance(app.config["FRESH_TIMEOUT"] + 1)
    before = session_cookie(client)
    wrong = post(
        client, "/account/reauthenticate", password="wrong password", next="/account/password"
    )
    assert wrong.status_code == 401
    response = post(client, "/account/reauthenticate", password=PASSWORD, next="/account/password")
    assert (response.status_code, response.headers["Location"]) == (303, "/account/password")
    assert session_cookie(client) != before
    assert client.get("/account/password").status_code == 200
    replay = app.test_client()
    replay.set_cookie("session", before)
    assert replay.get("/session").json == {}


def test_v3_7_1_remembered_session_is_not_fresh(app, client, auth, user):
    auth.login(remember=True)
    browser = app.test_client()
    browser.set_cookie("remember", client.get_cookie("remember").value)
    assert browser.get("/profile").status_code == 200
    assert (
        browser.get("/account/password").headers["Location"].startswith("/account/reauthenticate")
    )


def test_reauthentication_next_is_validated(client, auth, user):
    auth.login()
    response = post(client, "/account/reauthenticate", password=PASSWORD, next="//evil.example")
    assert response.headers["Location"] == "/profile"


def test_stale_htmx_request_gets_hx_redirect_to_reauthenticate(app, client, auth, user, clock):
    auth.login()
    clock.advance(app.config["FRESH_TIMEOUT"])
    response = client.get(
        "/account/password",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/account/sessions"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/account/reauthenticate?next=/account/sessions"


# command line --------------------------------------------------------------------------------


def test_cli_sessions_list_and_revoke_one(app, runner, client, auth, user, second):
    auth.login()
    listed = runner.invoke(args=["sessions", "list", "--user", "alice"])
    assert listed.exit_code == 0
    refs = re.findall(r"^([0-9a-f]{16})\s+alice", listed.output, re.M)
    assert len(refs) == 2
    mine = this_device_ref(client)
    other = next(ref for ref in refs if ref != mine)
    assert runner.invoke(args=["sessions", "revoke", other]).exit_code == 0
    assert second.get("/session").json == {}
    assert client.get("/session").json != {}


def test_cli_sessions_revoke_user_ends_everything(app, runner, client, auth, user, second):
    auth.login(remember=True)
    result = runner.invoke(args=["sessions", "revoke", "--user", "alice"])
    assert result.exit_code == 0 and "Ended 2 session(s)" in result.output
    assert client.get("/session").json == {} and second.get("/session").json == {}
    with app.app_context():
        assert get_db().query(RememberToken).count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sessions", "revoke", "nope"], "no such session"),
        (["sessions", "revoke"], "either a session ID or --user"),
        (["sessions", "revoke", "x", "--user", "alice"], "either a session ID or --user"),
        (["sessions", "list", "--user", "nobody"], "no such user"),
    ],
)
def test_cli_sessions_refusals(runner, user, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert message in result.output


def test_cli_set_password_ends_every_session(runner, client, auth, user, second):
    auth.login()
    result = runner.invoke(
        args=["users", "set-password", "alice", "--password-stdin"], input=NEW_PASSWORD
    )
    assert result.exit_code == 0
    assert client.get("/session").json == {} and second.get("/session").json == {}


# the sessions page: one confirmation, rows, words ----------------------------------------------


def test_sessions_page_lists_this_device_first_with_names_that_say_which(app, user, clock):
    firefox = app.test_client()
    firefox.environ_base["HTTP_USER_AGENT"] = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0"
    )
    AuthActions(firefox).login()
    clock.advance(5)
    client = app.test_client()
    AuthActions(client).login()
    html = client.get("/account/sessions").get_data(as_text=True)
    assert html.index("This device") < html.index("Firefox 130 on Windows")
    assert 'End<span class="visually-hidden"> the Firefox 130 on Windows session' in html
    assert "Sign out everywhere else" in html


def test_sign_out_everywhere_else_only_with_other_sessions(client, auth, user):
    auth.login()
    assert "Sign out everywhere else" not in client.get("/account/sessions").get_data(as_text=True)


def test_a_fresh_session_ends_others_without_a_password_box(client, auth, user, second):
    auth.login()
    html = client.get("/account/sessions").get_data(as_text=True)
    assert 'type="password"' not in html
    (other,) = [ref for ref in session_refs(client) if ref != this_device_ref(client)]
    response = post(client, f"/account/sessions/{other}/revoke")
    assert (response.status_code, response.headers["Location"]) == (303, "/account/sessions")
    assert second.get("/session").json == {}


def test_one_confirmation_opens_the_fresh_window(client, auth, user, second, clock):
    auth.login()
    clock.advance(601)  # past FRESH_TIMEOUT
    html = client.get("/account/sessions").get_data(as_text=True)
    assert html.count('type="password"') == 2  # the confirmation, and "everywhere else"
    assert html.count('autocomplete="username"') == 2
    (other,) = [ref for ref in session_refs(client) if ref != this_device_ref(client)]
    refused = post(client, f"/account/sessions/{other}/revoke")
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    # The error sits at the row it concerns.
    assert re.search(rf'id="error-{other}">Enter your password', page)
    wrong = post(client, "/account/sessions/confirm", password="not the password")
    assert wrong.status_code == 401
    assert 'id="error-confirm">That password is not right.' in wrong.get_data(as_text=True)
    assert post(client, "/account/sessions/confirm", password=PASSWORD).status_code == 303
    assert 'type="password"' not in client.get("/account/sessions").get_data(as_text=True)
    assert post(client, f"/account/sessions/{other}/revoke").status_code == 303
    assert second.get("/session").json == {}
