"""/preferences: the theme, applied by the server on every page, kept by the browser."""

from __future__ import annotations

import re

import pytest
from helpers import csrf_token, store_files


def theme_of(html: str) -> str:
    match = re.search(r'<html lang="en" data-theme="([a-z]+)">', html)
    assert match, "no data-theme on <html>"
    return match.group(1)


def choose(client, theme: str, next: str | None = None):  # type: ignore[no-untyped-def]
    data = {"theme": theme, "csrf_token": csrf_token(client)}
    if next is not None:
        data["next"] = next
    return client.post("/preferences", data=data)


def test_default_is_the_system_theme(client):
    assert theme_of(client.get("/").get_data(as_text=True)) == "system"


@pytest.mark.parametrize("theme", ["light", "dark", "system"])
def test_anonymous_choice_is_in_the_server_html_and_stores_nothing(app, client, theme):
    response = choose(client, theme)
    assert response.status_code == 303
    assert response.headers["Location"] == "/preferences"
    for path in ("/", "/login", "/preferences", "/basket"):
        assert theme_of(client.get(path).get_data(as_text=True)) == theme
    assert store_files(app) == {}


def test_switch_returns_to_the_page_it_was_on(client):
    response = choose(client, "dark", next="/login?next=/profile")
    assert response.headers["Location"] == "/login?next=/profile"
    assert choose(client, "dark", next="https://evil.example/").headers["Location"] == (
        "/preferences"
    )


def test_header_offers_the_switch_with_the_current_theme_selected(client):
    choose(client, "dark")
    html = client.get("/").get_data(as_text=True)
    assert 'action="/preferences"' in html
    assert '<option value="dark" selected>' in html


def test_theme_survives_sign_in_and_sign_out(client, auth, user):
    choose(client, "dark")
    auth.login()
    assert theme_of(client.get("/profile").get_data(as_text=True)) == "dark"
    choose(client, "light")
    auth.logout()
    assert theme_of(client.get("/").get_data(as_text=True)) == "light"


@pytest.mark.parametrize("theme", ["", "blue", "DARK", "dark "])
def test_theme_outside_the_list_is_refused_and_nothing_changes(client, theme):
    choose(client, "dark")
    response = choose(client, theme)
    assert response.status_code == 400
    assert "Choose a theme among light, dark, system." in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert theme_of(client.get("/").get_data(as_text=True)) == "dark"


def test_forged_cookie_value_falls_back_to_the_system_theme(client):
    client.set_cookie("theme", '"><script>')
    assert theme_of(client.get("/").get_data(as_text=True)) == "system"


def test_post_without_csrf_token_is_refused(client):
    response = client.post("/preferences", data={"theme": "dark"})
    assert response.status_code == 400
    assert theme_of(client.get("/").get_data(as_text=True)) == "system"


def test_cookie_attributes(client):
    cookie = choose(client, "dark").headers["Set-Cookie"]
    assert cookie.startswith("theme=dark;")
    for part in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=31536000"):
        assert part in cookie


def test_switch_on_a_page_whose_query_is_not_utf8(client):
    """The switch's `next` holds the query as sent, percent-encoded: the error page that
    refuses such a query (400) renders the header too, never a 500."""
    query = "next=%2Fprofile&x=\x80"  # WSGI's latin-1 string: the byte 0x80, not UTF-8
    response = client.get("/login", environ_overrides={"QUERY_STRING": query})
    assert response.status_code == 400
    assert 'name="next" value="/login?next=%2Fprofile&amp;x=%80"' in response.text
