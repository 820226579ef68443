"""Sign-in, sign-out, sign-up, remember me, and what protected routes answer strangers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import PASSWORD, AuthActions, csrf_token, session_cookie, store_files

from webapp.db import get_db
from webapp.models import RememberToken
from webapp.passwords import Passwords
from webapp.sessions.remember import REUSE_GRACE
from webapp.users import email_error


def test_login_form_has_the_spec_fields(client):
    html = client.get("/login?next=/api/hello").get_data(as_text=True)
    for name in ("username", "password", "remember", "next", "csrf_token"):
        assert f'name="{name}"' in html
    assert 'value="/api/hello"' in html


def test_sign_in_redirects_to_profile_with_a_new_session(client, auth, user):
    response = auth.login()
    assert response.status_code == 303
    assert response.headers["Location"] == "/profile"
    assert client.get("/profile").status_code == 200
    assert "Welcome, Alice Example!" in client.get("/profile").get_data(as_text=True)


def test_signed_in_login_page_redirects_to_profile(client, auth, user):
    auth.login()
    response = client.get("/login")
    assert response.status_code == 303
    assert response.headers["Location"] == "/profile"


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password here"), ("nobody", PASSWORD), ("ALICE", "wrong password here")],
)
def test_failed_sign_in_is_401_with_one_generic_message(client, auth, user, username, password):
    response = auth.login(username, password)
    assert response.status_code == 401
    html = response.get_data(as_text=True)
    assert "Invalid username or password" in html
    assert client.get("/session").json == {}


def test_username_is_case_insensitive_at_sign_in(client, auth, user):
    assert auth.login("ALICE").status_code == 303


def test_unknown_username_does_the_same_hashing_work(client, auth, user, monkeypatch):
    calls = []
    real_verify = Passwords.verify

    def counting_verify(self, password_hash, password):
        calls.append(password_hash)
        return real_verify(self, password_hash, password)

    monkeypatch.setattr(Passwords, "verify", counting_verify)
    auth.login("alice", "wrong password here")
    auth.login("nobody-at-all", "wrong password here")
    assert len(calls) == 2
    assert calls[0] != calls[1]  # the second one verified against the dummy hash


def test_empty_fields_are_a_form_error_not_a_crash(client):
    token = csrf_token(client)
    response = client.post("/login", data={"username": "", "password": "", "csrf_token": token})
    assert response.status_code == 400
    assert "Enter your username." in response.get_data(as_text=True)


# CSRF --------------------------------------------------------------------------------------


def test_v4_2_2_sign_in_without_csrf_token_is_400_and_signs_nobody_in(client, user):
    client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert client.get("/session").json == {}


def test_sign_in_with_a_wrong_csrf_token_is_400(client, user):
    client.get("/login")
    data = {"username": "alice", "password": PASSWORD, "csrf_token": "forged"}
    assert client.post("/login", data=data).status_code == 400
    assert client.get("/session").json == {}


def test_v4_2_2_sign_out_without_csrf_token_is_400_and_keeps_the_session(client, auth, user):
    auth.login()
    assert client.post("/logout").status_code == 400
    assert client.get("/session").json["user"]["username"] == "alice"


def test_v4_2_2_csrf_token_from_another_session_is_refused(app, auth, user):
    other = app.test_client()
    foreign = csrf_token(other)
    auth.login()
    response = auth.client.post("/logout", data={"csrf_token": foreign})
    assert response.status_code == 400
    assert auth.client.get("/session").json != {}


def test_csrf_header_is_accepted(client, auth, user):
    auth.login()
    token = csrf_token(client, "/")
    response = client.post("/logout", headers={"X-CSRFToken": token})
    assert response.status_code == 303


# next --------------------------------------------------------------------------------------

HOSTILE_NEXT = [
    "//evil.example",
    "/\\evil.example",
    "https://evil.example",
    "http:/evil.example",
    "\t//evil.example",
    "\n//evil.example",
    "/\t/evil.example",
    "/%2Fevil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_hostile_next_falls_back_to_profile(client, auth, user, target):
    response = auth.login(next=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/profile"


@pytest.mark.parametrize("target", ["/api/hello", "/profile?tab=1", "/", "/a/b%20c"])
def test_same_site_next_is_followed(client, auth, user, target):
    assert auth.login(next=target).headers["Location"] == target


@pytest.mark.parametrize("target", HOSTILE_NEXT[:6])
def test_hostile_next_is_not_put_into_the_login_form(client, target):
    html = client.get("/login", query_string={"next": target}).get_data(as_text=True)
    assert 'name="next" type="hidden" value=""' in html


# rotation and server-side sign-out ------------------------------------------------------------


def test_v3_2_1_new_session_id_on_sign_in(app, client, auth, user):
    """A session id planted in the victim's browser (here: the attacker's own live session)
    is replaced at sign-in and killed, so the attacker never holds the victim's session."""
    from webapp.users import create_user

    with app.app_context():
        create_user(get_db(), "mallory", PASSWORD)
    attacker = app.test_client()
    AuthActions(attacker).login("mallory")
    planted = session_cookie(attacker)
    client.set_cookie("session", planted)
    auth.login()
    assert session_cookie(client) != planted
    assert client.get("/session").json["user"]["username"] == "alice"
    assert attacker.get("/session").json == {}  # the planted id is dead, not the victim's


def test_anonymous_visitors_create_no_session_id_to_plant(app, client):
    client.get("/login")
    client.get("/signup")
    assert session_cookie(client) is None
    assert store_files(app) == {}


def test_v3_3_1_sign_out_kills_the_session_on_the_server(app, client, auth, user):
    auth.login()
    saved = session_cookie(client)
    assert len(store_files(app)) == 1
    response = auth.logout()
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?reason=signed-out"
    assert any(
        c.startswith("session=;") and "Max-Age=0" in c
        for c in response.headers.getlist("Set-Cookie")
    )
    replay = app.test_client()
    replay.set_cookie("session", saved)
    assert replay.get("/session").json == {}
    assert replay.get("/api/hello").status_code == 401


def test_logout_link_only_shows_a_confirmation(client, auth, user):
    auth.login()
    response = client.get("/logout")
    assert response.status_code == 200
    assert 'method="post"' in response.get_data(as_text=True)
    assert client.get("/session").json["user"]["username"] == "alice"


def test_anonymous_logout_redirects_to_login(client):
    assert client.get("/logout").headers["Location"] == "/login"
    token = csrf_token(client)
    response = client.post("/logout", data={"csrf_token": token})
    assert (response.status_code, response.headers["Location"]) == (
        303,
        "/login?reason=signed-out",
    )


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("reason=signed-out", "You are signed out."),
        ("reason=expired", "Your session expired."),
        ("reason=revoked", "ended from another device"),
        ("reason=signout", "You signed out in another tab."),
        ("next=%2Fprofile", "Sign in to see that page."),
    ],
)
def test_sign_in_page_says_why_the_user_is_there(client, query, shown):
    assert shown in client.get(f"/login?{query}").get_data(as_text=True)


def test_sign_in_page_never_shows_a_reason_from_the_link(client):
    html = client.get("/login?reason=%3Cb%3Ehacked%3C%2Fb%3E").get_data(as_text=True)
    # Only the theme switch's way back carries the query, percent-encoded (never shown).
    shown = html.replace("reason=%3Cb%3Ehacked%3C%2Fb%3E", "")
    assert "hacked" not in shown and 'class="notice"' not in html


def test_signing_in_as_someone_else_switches_account(app, client, auth, user):
    from webapp.users import create_user

    with app.app_context():
        create_user(get_db(), "bob", PASSWORD, "Bob")
    auth.login()
    first = session_cookie(client)
    auth.login("bob")
    assert session_cookie(client) != first
    assert client.get("/session").json["user"]["username"] == "bob"


# sign-up -----------------------------------------------------------------------------------


def signup(client, **fields):
    data = {
        "username": "carol",
        "name": "Carol",
        "email": "carol@example.com",
        "password": PASSWORD,
        "confirm": PASSWORD,
    }
    data.update(fields)
    data.setdefault("csrf_token", csrf_token(client, "/signup"))
    return client.post("/signup", data=data)


def test_sign_up_creates_the_account_and_signs_in(client):
    response = signup(client)
    assert (response.status_code, response.headers["Location"]) == (303, "/profile")
    assert client.get("/session").json["user"]["name"] == "Carol"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"username": "ALICE"}, "is taken"),
        ({"username": "bad name"}, "Username must be"),
        ({"username": "x" * 65}, "Username must be"),
        ({"password": "short", "confirm": "short"}, "at least 12"),
        ({"password": "p" * 129, "confirm": "p" * 129}, "at most 128"),
        ({"confirm": "something else!"}, "Passwords differ"),
        ({"email": "not-an-email"}, "Email must"),
        ({"name": ""}, "Enter your name"),
        ({"password": "1Q2W3E4R5T6Y", "confirm": "1Q2W3E4R5T6Y"}, "most common ones"),
        ({"password": "carolcarol12", "confirm": "carolcarol12"}, "must not be your username"),
    ],
)
def test_sign_up_refuses_bad_input_with_a_message(client, user, fields, message):
    response = signup(client, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert client.get("/session").json == {}


def test_hole8_sign_ups_from_one_address_are_limited_taken_names_included(app_config, clock):
    """Sign-ups cost an Argon2 hash each and "taken" answers enumerate usernames: SIGNUP_LIMIT
    per address per hour, refusals counted, then 429 with Retry-After."""
    from webapp import create_app
    from webapp.users import create_user, find_user

    app = create_app({**app_config, "SIGNUP_LIMIT": 3})
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    answers = [signup(app.test_client(), username=name) for name in ("carol", "ALICE", "dave")]
    assert [answer.status_code for answer in answers] == [303, 400, 303]
    refused = signup(app.test_client(), username="erin")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600"
    assert "Too many accounts were created from your address. Wait 60 minutes" in (
        refused.get_data(as_text=True)
    )
    assert signup(app.test_client(), username="alice").status_code == 429  # no enumeration
    assert signup(app.test_client(), username="x y").status_code == 400  # form errors first
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert signup(elsewhere, username="frank").status_code == 303
    clock.advance(3600)
    assert signup(app.test_client(), username="erin").status_code == 303
    with app.app_context():
        assert find_user(get_db(), "erin") is not None


def test_hole8_parallel_sign_ups_cannot_race_the_limit(app_config):
    from webapp import create_app

    app = create_app({**app_config, "SIGNUP_LIMIT": 3})
    browsers = [app.test_client() for _ in range(8)]
    tokens = [csrf_token(browser, "/signup") for browser in browsers]
    start = threading.Barrier(len(browsers))

    def sign_up(i):
        start.wait()
        return signup(browsers[i], username=f"user{i}", csrf_token=tokens[i]).status_code

    with ThreadPoolExecutor(len(browsers)) as pool:
        statuses = sorted(pool.map(sign_up, range(len(browsers))))
    assert statuses == [303] * 3 + [429] * 5


@pytest.mark.parametrize("email", ["a\x00b@example.com", "ab@exa\x07mple.com", "ab@example.co\x7f"])
def test_email_rule_refuses_control_characters(email):
    """The account rule itself, not only the forms: the CLI and any caller share it."""
    assert email_error(email) == "Email must look like name@example.com."


def test_sign_up_can_be_turned_off(app_config):
    from webapp import create_app

    client = create_app({**app_config, "SIGNUP": False}).test_client()
    assert client.get("/signup").status_code == 404
    assert client.post("/signup", data={"csrf_token": csrf_token(client)}).status_code == 404
    assert "/signup" not in client.get("/login").get_data(as_text=True)


def test_signed_in_sign_up_page_redirects_to_profile(client, auth, user):
    auth.login()
    assert client.get("/signup").headers["Location"] == "/profile"


# remember me -------------------------------------------------------------------------------


def remember_cookie(client):
    cookie = client.get_cookie("remember")
    return cookie.value if cookie else None


def test_remember_me_restores_a_session_in_a_new_browser(app, client, auth, user):
    response = auth.login(remember=True)
    header = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("remember="))
    assert "HttpOnly" in header and "Max-Age=2592000" in header and "SameSite=Lax" in header
    value = remember_cookie(client)
    browser = app.test_client()  # the browser was closed: only the remember cookie is left
    browser.set_cookie("remember", value)
    assert browser.get("/profile").status_code == 200
    assert browser.get("/session").json["user"]["username"] == "alice"
    assert remember_cookie(browser) not in (None, value)  # rotated on use


def test_a_used_remember_token_is_dead(app, client, auth, user, clock):
    auth.login(remember=True)
    value = remember_cookie(client)
    first = app.test_client()
    first.set_cookie("remember", value)
    assert first.get("/profile").status_code == 200
    clock.advance(REUSE_GRACE)  # sooner, it is taken for a parallel request (test_remember.py)
    replay = app.test_client()
    replay.set_cookie("remember", value)
    assert replay.get("/profile").status_code == 302


def test_remember_token_is_stored_only_as_a_hash(app, client, auth, user):
    auth.login(remember=True)
    selector, secret = remember_cookie(client).split(".")
    with app.app_context():
        token = get_db().get(RememberToken, selector)
        assert token is not None and secret not in token.secret_hash


def test_v3_3_1_sign_out_revokes_the_remember_token(app, client, auth, user):
    auth.login(remember=True)
    value = remember_cookie(client)
    response = auth.logout()
    assert any(c.startswith("remember=;") for c in response.headers.getlist("Set-Cookie"))
    replay = app.test_client()
    replay.set_cookie("remember", value)
    assert replay.get("/profile").status_code == 302
    with app.app_context():
        assert get_db().query(RememberToken).count() == 0


def test_expired_remember_token_does_not_sign_in(app, client, auth, user, clock):
    auth.login(remember=True)
    value = remember_cookie(client)
    clock.advance(app.config["REMEMBER_DURATION"] + 1)
    browser = app.test_client()
    browser.set_cookie("remember", value)
    assert browser.get("/profile").status_code == 302
    assert remember_cookie(browser) is None


@pytest.mark.parametrize(
    "value", ["abc.def", "a\x00b.c", "A" * 16 + ".\x00" + "b" * 42, "A" * 16 + ".x" * 30]
)
def test_forged_remember_cookie_is_ignored_and_cleared(app, user, value):
    """Malformed cookies never reach the database (PostgreSQL refuses a NUL byte)."""
    browser = app.test_client()
    browser.set_cookie("remember", value)
    assert browser.get("/").status_code == 200
    assert browser.get("/session").json == {}
    assert remember_cookie(browser) is None


def test_session_poll_never_redeems_a_remember_cookie(app, client, auth, user):
    auth.login(remember=True)
    browser = app.test_client()
    browser.set_cookie("remember", remember_cookie(client))
    response = browser.get("/session")
    assert response.json == {}
    assert "Set-Cookie" not in response.headers


def test_restored_session_is_not_fresh(app, client, auth, user):
    auth.login(remember=True)
    browser = app.test_client()
    browser.set_cookie("remember", remember_cookie(client))
    with browser:
        browser.get("/profile")
        from flask import session

        assert session["_fresh"] is False


# what protected routes answer strangers ---------------------------------------------------


def test_protected_page_redirects_to_login_with_next(client):
    response = client.get("/profile")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fprofile"


def test_api_answers_401_json(client):
    response = client.get("/api/hello")
    assert response.status_code == 401
    assert response.json == {"message": "Not authenticated"}


def test_api_says_hello_when_signed_in(client, auth, user):
    auth.login()
    assert client.get("/api/hello").json == {"message": "Hello, Alice Example"}


@pytest.mark.parametrize(
    ("current_url", "location"),
    [
        ("http://localhost/profile?tab=2", "/login?next=%2Fprofile%3Ftab%3D2"),
        ("http://localhost/", "/login?next=%2F"),
        ("http://localhost//evil.example", "/login"),
        ("", "/login"),
    ],
)
def test_htmx_request_gets_401_and_hx_redirect(client, current_url, location):
    response = client.get("/profile", headers={"HX-Request": "true", "HX-Current-URL": current_url})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == location
    assert "Location" not in response.headers


def test_auth_actions_helper_signs_out(client, auth, user):
    auth.login()
    assert isinstance(auth, AuthActions)
    auth.logout()
    assert client.get("/session").json == {}
