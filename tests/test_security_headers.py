"""What a browser may keep: no page is stored (a shared computer's Back button after sign-out
must not show the previous user's pages), static files are kept for a year, and sign-out
deletes this site's own cookies by name, never every cookie of the registrable domain."""

from __future__ import annotations

import pytest
from flask import url_for
from helpers import PASSWORD, csrf_token

from webapp import create_app
from webapp.db import get_db
from webapp.users import create_user

SIGNED_IN_PAGES = (
    "/",
    "/profile",
    "/account/sessions",
    "/account/password",
    "/account/profile",
    "/account/reauthenticate",
    "/api/hello",
    "/logout",
    "/session",
    "/csrf",
    "/healthz",
    "/no-such-page",
)
ANONYMOUS_PAGES = ("/", "/login", "/signup", "/profile", "/api/hello", "/session", "/csrf")


def directives(response) -> set[str]:  # type: ignore[no-untyped-def]
    return {part.strip() for part in response.headers.get("Cache-Control", "").split(",")}


def test_every_page_a_signed_in_user_gets_is_no_store(client, auth, user):
    auth.login()
    for path in SIGNED_IN_PAGES:
        response = client.get(path)
        assert "no-store" in directives(response), (path, response.headers)


def test_every_answer_to_a_signed_in_user_is_no_store_posts_and_redirects_too(client, auth, user):
    signed_in = auth.login()
    assert signed_in.status_code == 303 and "no-store" in directives(signed_in)
    token = csrf_token(client)
    kept = client.post("/session/keepalive", data={"csrf_token": token})
    assert kept.status_code == 303 and "no-store" in directives(kept)
    signed_out = client.post("/logout", data={"csrf_token": token})
    assert signed_out.status_code == 303 and "no-store" in directives(signed_out)


def test_anonymous_pages_are_no_store_too(client):
    """They carry a CSRF token and the widget, and may be what a signed-out Back shows."""
    for path in ANONYMOUS_PAGES:
        assert "no-store" in directives(client.get(path)), path


def test_session_endpoint_keeps_its_own_cache_control(client, auth, user):
    """The fast path and the route send the same header: private, no-store."""
    assert client.get("/session").headers["Cache-Control"] == "private, no-store"
    auth.login()
    assert client.get("/session").headers["Cache-Control"] == "private, no-store"
    fragment = client.get("/session", headers={"HX-Request": "true"})
    assert fragment.headers["Cache-Control"] == "private, no-store"


def test_static_files_keep_their_long_cache(app, client):
    with app.test_request_context():
        versioned = url_for("static", filename="css/app.css")
    with client.get(versioned) as response:
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    with client.get("/static/css/app.css") as response:
        assert response.headers["Cache-Control"] == "public, no-cache"


def test_sign_out_clears_cache_and_storage_but_not_the_domains_cookies(client, auth, user):
    """Clear-Site-Data "cookies" deletes every cookie of the registrable domain (other sites
    under example.com included); the browser's cache of this site's pages must go."""
    auth.login()
    response = auth.logout()
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'
    assert "cookies" not in response.headers["Clear-Site-Data"]


def deleted_cookies(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Name -> Set-Cookie header, for the cookies the response deletes."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        if "Max-Age=0" in header:
            found[header.split("=", 1)[0]] = header
    return found


def test_sign_out_deletes_the_session_and_remember_cookies_by_name(client, auth, user):
    auth.login(remember=True)
    assert client.get_cookie("session") and client.get_cookie("remember")
    response = auth.logout()
    assert set(deleted_cookies(response)) == {"session", "remember"}
    assert client.get_cookie("session") is None and client.get_cookie("remember") is None


def test_a_sign_out_with_nothing_to_end_keeps_the_anonymous_csrf_cookie(client, user):
    """Deleting it would fail the CSRF check of every other open tab's form (a clean-clone
    run saw the passkey autofill of a sign-in page get 400 after another tab's sign-out)."""
    token = csrf_token(client, "/login")
    assert client.get_cookie("csrf")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert deleted_cookies(response) == {}
    other_tab = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=other_tab).status_code == 303


def test_sign_out_deletes_a_csrf_cookie_left_beside_the_session(client, auth, user):
    """A signed-in browser keeps its token in the session; a csrf cookie left over (set by an
    anonymous request racing the sign-in) goes at sign-out with the rest."""
    csrf_token(client, "/login")
    stale = client.get_cookie("csrf").value
    auth.login()
    token = csrf_token(client, "/")
    client.set_cookie("csrf", stale)
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert "csrf" in deleted_cookies(response)


@pytest.fixture
def https_app(app_config):  # type: ignore[no-untyped-def]
    app = create_app({**app_config, "SECURE_COOKIES": True})
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    return app


def test_sign_out_over_https_deletes_the_host_cookies_as_they_were_set(https_app):
    """A __Host- cookie is only deleted with Secure and Path=/."""
    client = https_app.test_client()
    https = {"base_url": "https://localhost", "headers": {"Origin": "https://localhost"}}
    page = client.get("/login", base_url="https://localhost").get_data(as_text=True)
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    form = {"username": "alice", "password": PASSWORD, "remember": "y", "csrf_token": token}
    assert client.post("/login", data=form, **https).status_code == 303
    page = client.get("/", base_url="https://localhost").get_data(as_text=True)
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    response = client.post("/logout", data={"csrf_token": token}, **https)
    deleted = deleted_cookies(response)
    assert set(deleted) == {"__Host-session", "__Host-remember"}
    for header in deleted.values():
        assert "; Secure" in header and "; Path=/" in header and "Domain=" not in header
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'
