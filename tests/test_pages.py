"""Pages, the widget on them, the health check, errors and response headers."""

from __future__ import annotations

import re

import pytest
from helpers import csrf_token

from webapp import db
from webapp.sessions import store as session_store


def widget(html: str) -> str:
    match = re.search(r'<div id="session-widget".*?</div>\s*</div>', html, re.S)
    assert match, "no session widget"
    return match.group(0)


def test_home_page_widget_starts_loading_with_the_known_state_for_no_js(client):
    html = client.get("/").get_data(as_text=True)
    part = widget(html)
    assert 'data-session-status="loading"' in part
    assert 'aria-busy="true"' in part
    assert 'hx-trigger="load, session:refresh"' in part
    assert re.search(r"<noscript>.*Please log in to see your profile\..*</noscript>", part, re.S)
    assert 'aria-live="polite"' in html


def test_home_page_noscript_shows_the_signed_in_state(client, auth, user):
    auth.login()
    part = widget(client.get("/").get_data(as_text=True))
    assert re.search(r"<noscript>.*Welcome, Alice Example!.*</noscript>", part, re.S)


def test_profile_renders_the_known_state_at_once(client, auth, user):
    auth.login()
    html = client.get("/profile").get_data(as_text=True)
    part = widget(html)
    assert 'data-session-status="authenticated"' in part
    assert "load," not in part
    assert "Welcome, Alice Example!" in html and "alice@example.com" in html


@pytest.mark.parametrize("path", ["/", "/login", "/signup", "/no-such-page"])
def test_every_page_has_the_csrf_meta_tag_and_the_widget(client, path):
    html = client.get(path).get_data(as_text=True)
    assert '<meta name="csrf-token" content="' in html
    assert 'id="session-widget"' in html


def test_poll_interval_comes_from_the_config(app_config):
    from webapp import create_app

    client = create_app({**app_config, "POLL_SECONDS": 17}).test_client()
    assert 'data-poll-seconds="17"' in client.get("/").get_data(as_text=True)


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"


@pytest.mark.parametrize(("module", "check"), [(db, "database"), (session_store, "session_store")])
def test_healthz_names_what_is_down(client, monkeypatch, module, check):
    def down(*_args):
        raise OSError("simulated outage")

    monkeypatch.setattr(module, "ping", down)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["checks"][check].startswith("unavailable")
    assert response.json["status"] == "unavailable"


def test_requests_over_1_mib_get_413(client):
    token = csrf_token(client)
    response = client.post(
        "/login", data={"csrf_token": token, "username": "x" * (1024 * 1024 + 10)}
    )
    assert response.status_code == 413


def test_unknown_page_is_a_404_page_or_json(client):
    assert client.get("/nope").status_code == 404
    response = client.get("/api/nope")
    assert response.status_code == 404
    assert "error" in response.json


def test_wrong_method_is_405(client):
    assert client.delete("/profile").status_code == 405


def test_every_response_carries_the_security_headers(client):
    for path in ("/", "/session", "/login", "/api/hello", "/static/css/app.css"):
        with client.get(path) as response:
            headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"


def test_every_page_has_a_skip_link_and_a_labelled_nav_marking_the_current_page(client):
    html = client.get("/").get_data(as_text=True)
    assert '<a class="skip-link" href="#main">Skip to content</a>' in html
    assert '<main id="main"' in html
    nav = re.search(r'<nav aria-label="Main".*?</nav>', html, re.S)
    assert nav and re.search(r'href="/" aria-current="page">Home</a>', nav.group(0))
    # The signed-in links are there for the widget to show, marked for app.css to hide.
    assert 'class="nav-private"' in nav.group(0) and 'data-known="unauthenticated"' in nav.group(0)


def test_times_show_labelled_utc_for_session_js_to_make_relative(client, auth, user):
    auth.login()
    html = client.get("/profile").get_data(as_text=True)
    times = re.findall(
        r'<time datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)" data-relative tabindex="0">'
        r"(\d{4}-\d\d-\d\d \d\d:\d\d) UTC</time>",
        html,
    )
    assert len(times) == 2  # member since, session ends
    for machine, shown in times:
        assert machine.replace("T", " ")[:16] == shown
