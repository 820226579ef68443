"""The session store: private files, no pruning of live sessions, expired entries never served.
Damaged and foreign entries, and the start-up check: test_store_integrity.py."""

from __future__ import annotations

import os
import stat
import struct
import time
from pathlib import Path

import pytest
from helpers import PASSWORD, csrf_token, session_cookie, store_files

from webapp.db import get_db
from webapp.models import UserSession
from webapp.sessions import files as session_files
from webapp.sessions.store import MOVED_KEY, MOVED_SECONDS
from webapp.users import create_user


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.filesystem_only
def test_store_folder_is_0700_and_files_0600(app, client, auth, user):
    auth.login()
    folder = Path(app.instance_path) / "sessions"
    assert mode(folder) == 0o700
    files = list(folder.iterdir())
    assert files and all(mode(f) == 0o600 for f in files)


def test_a_thousand_sessions_all_stay_valid(app, user):
    """cachelib's default threshold (500) would delete the oldest live sessions."""
    clients = []
    for _ in range(1000):
        browser = app.test_client()
        token = csrf_token(browser)
        data = {"username": "alice", "password": PASSWORD, "csrf_token": token}
        assert browser.post("/login", data=data).status_code == 303
        clients.append(browser)
    assert len(store_files(app)) == 1000
    assert all(b.get("/session").json.get("user") for b in clients)


def entry_path(app, client, sid: str | None = None) -> Path:
    """The store file of the client's session (or of `sid`), named as cachelib names it."""
    interface = app.session_interface
    store_id = interface._get_store_id(sid or session_cookie(client))
    return Path(interface.cache._get_filename(store_id))


@pytest.mark.filesystem_only
def test_expired_entries_are_never_served(app, client, auth, user, monkeypatch):
    """The store's own expiry (cachelib's header, real time) holds even if the session's
    timestamps say otherwise."""
    auth.login()
    later = time.time() + app.config["IDLE_TIMEOUT"] + 1
    monkeypatch.setattr(session_files, "time", lambda: later)
    assert client.get("/session").json == {}


@pytest.mark.filesystem_only
def test_stale_cookie_is_deleted_on_the_next_page(app, client, auth, user):
    auth.login()
    entry_path(app, client).unlink()
    response = client.get("/profile")
    assert response.status_code == 302
    assert session_cookie(client) is None


@pytest.mark.filesystem_only
def test_stale_cookie_is_left_alone_by_polls(app, client, auth, user):
    auth.login()
    entry_path(app, client).unlink()
    response = client.get("/session")
    assert response.json == {} and "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/login/passkey/options"), ("get", "/profile"), ("get", "/session"), ("get", "/")],
)
def test_a_request_still_on_the_rotated_away_id_leaves_the_new_cookie_alone(
    app, client, auth, user, method, path
):
    """A request sent with the old id while the session was rotating (a script's fetch during
    re-authentication) answered with a cookie deletion, and the browser, which had just got the
    new id, lost it: signed out (seen in Chromium). The old id is dead all the same; a stale
    cookie naming no session at all is still deleted."""
    auth.login()
    old = session_cookie(client)
    reauthenticated = client.post(
        "/account/reauthenticate", data={"password": PASSWORD, "csrf_token": csrf_token(client)}
    )
    assert reauthenticated.status_code == 303 and session_cookie(client) != old
    late = app.test_client()
    late.set_cookie("session", old)
    response = getattr(late, method)(path)
    assert not any(
        cookie.startswith("session=") for cookie in response.headers.getlist("Set-Cookie")
    )
    assert late.get("/session").json == {}  # the old id signs no one in
    assert client.get("/session").json["user"]["name"]
    interface = app.session_interface
    store_id = interface._get_store_id(old)
    assert interface._retrieve_session_data(store_id) == {MOVED_KEY: True}
    if app.config["SESSION_BACKEND"] == "redis":
        assert 0 < interface.client.ttl(store_id) <= MOVED_SECONDS
    else:
        (expires,) = struct.unpack("I", entry_path(app, late, old).read_bytes()[:4])
        assert expires <= time.time() + MOVED_SECONDS + 1


def test_a_request_on_the_rotated_away_id_neither_stores_nor_restores(app, client, auth, user):
    """What a late request on the old id would store (a passkey challenge, here a basket line)
    would come with a new session cookie replacing the signed-in one; and its remember-me
    cookie must not start another session: the browser is signed in already."""
    auth.login(remember=True)
    old = session_cookie(client)
    reauthenticated = client.post(
        "/account/reauthenticate", data={"password": PASSWORD, "csrf_token": csrf_token(client)}
    )
    assert reauthenticated.status_code == 303
    late = app.test_client()
    late.set_cookie("session", old)
    late.set_cookie("remember", client.get_cookie("remember").value)
    anonymous = app.test_client()  # the late request passes CSRF with an anonymous token
    token = anonymous.get("/csrf").json["csrfToken"]
    late.set_cookie("csrf", anonymous.get_cookie("csrf").value)
    added = late.post("/basket/items", data={"csrf_token": token, "sku": "tea", "quantity": "1"})
    assert added.status_code == 303
    cookies = ",".join(added.headers.getlist("Set-Cookie"))
    assert "session=" not in cookies and "remember=" not in cookies
    with app.app_context():
        assert get_db().query(UserSession).count() == 1
    assert client.get("/session").json["user"]["name"]


def test_deleted_user_has_no_session(app, client, auth, user):
    auth.login()
    from webapp.users import delete_user, find_user

    with app.app_context():
        db = get_db()
        delete_user(db, find_user(db, "alice"))
        create_user(db, "mallory", PASSWORD)  # ids are never reused
    assert client.get("/session").json == {}


# anonymous visitors: their CSRF token lives in a signed cookie, not in the store ---------------


def test_anonymous_pages_keep_their_csrf_token_in_a_signed_cookie(app, client):
    response = client.get("/login")
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 1 and cookies[0].startswith("csrf=")
    assert "HttpOnly" in cookies[0] and "SameSite=Lax" in cookies[0]
    assert "Set-Cookie" not in client.get("/signup").headers  # the same token, not re-sent
    assert store_files(app) == {}


def test_anonymous_visits_do_not_grow_the_store(app, client, auth, user):
    """Every anonymous page with a form (and /csrf) leaves the store as it was: only a
    signed-in session is stored, and it stays valid."""
    auth.login()
    stored = store_files(app)
    for _ in range(60):
        for path in ("/", "/login", "/signup", "/csrf"):
            assert app.test_client().get(path).status_code == 200
    assert store_files(app) == stored
    assert client.get("/session").json["user"]["username"] == "alice"


def test_forged_csrf_cookie_is_refused(client, user):
    token = csrf_token(client, "/login")
    client.set_cookie("csrf", "forged.value.here")
    data = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=data).status_code == 400


def test_sign_in_moves_the_token_into_the_session_and_drops_the_cookie(app, client, auth, user):
    client.get("/login")
    response = auth.login()
    assert any(c.startswith("csrf=;") for c in response.headers.getlist("Set-Cookie"))
    assert client.get_cookie("csrf") is None
    assert len(store_files(app)) == 1


def test_sign_out_leaves_nothing_in_the_store(app, client, auth, user):
    auth.login()
    auth.logout()
    client.get("/login")
    assert store_files(app) == {}
    assert session_cookie(client) is None
