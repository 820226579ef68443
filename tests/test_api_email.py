"""GET /api/email: the seed's second server example, in plain text, never writing."""

from __future__ import annotations

from helpers import PASSWORD, store_files

from webapp.db import get_db
from webapp.users import create_user


def test_anonymous_gets_no_session_found_and_nothing_is_created(app, client):
    response = client.get("/api/email")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "No session found"
    assert "Set-Cookie" not in response.headers
    assert store_files(app) == {}


def test_signed_in_user_gets_their_email_without_a_store_write(app, client, auth, user):
    auth.login()
    before = store_files(app)
    response = client.get("/api/email")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "User email: alice@example.com"
    assert "Set-Cookie" not in response.headers
    assert store_files(app) == before


def test_user_without_an_email_gets_a_clear_line(app, client, auth):
    with app.app_context():
        create_user(get_db(), "bob", PASSWORD, "Bob")
    auth.login("bob")
    assert client.get("/api/email").get_data(as_text=True) == "User email: (none)"


def test_after_sign_out_there_is_no_session(client, auth, user):
    auth.login()
    auth.logout()
    assert client.get("/api/email").get_data(as_text=True) == "No session found"
