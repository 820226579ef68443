"""A session's recent pages: kept in the session, bounded, paths only, stored only when the
session is written anyway (the touch throttle), shown on /account/sessions, gone with it."""

from __future__ import annotations

import re

from helpers import store_files

from webapp.sessions import policy as session_policy


def recent(client) -> list[str]:  # type: ignore[no-untyped-def]
    html = client.get("/account/sessions").text
    section = re.search(r'<ol class="recent-pages">(.*?)</ol>', html, re.S)
    assert section, "no recent pages on the sessions page"
    return re.findall(r"<code>([^<]*)</code>", section.group(1))


def test_pages_are_recorded_without_a_store_write_per_request(app, client, auth, user, clock):
    auth.login()
    clock.advance(app.config["TOUCH_INTERVAL"])
    client.get("/profile?token=secret")  # the touch: stored, and the page with it
    writes = store_files(app)
    client.get("/basket")  # within the touch interval: no write, not recorded
    client.get("/")
    client.get("/session")
    client.get("/api/email")
    assert store_files(app) == writes
    pages = recent(client)  # this request shows itself, and what was stored
    assert pages == ["/account/sessions", "/profile"]
    assert "secret" not in client.get("/account/sessions").text.split("recent-pages")[1]


def test_pages_change_nothing_until_the_next_touch_stores_them(app, client, auth, user, clock):
    auth.login()
    for path in ("/profile", "/basket", "/preferences"):
        clock.advance(app.config["TOUCH_INTERVAL"])
        client.get(path)
    assert recent(client)[:4] == ["/account/sessions", "/preferences", "/basket", "/profile"]


def test_recent_pages_are_bounded(app, client, auth, user, clock):
    auth.login()
    for number in range(15):
        clock.advance(app.config["TOUCH_INTERVAL"])
        client.get(f"/nowhere-{number}")
    pages = recent(client)
    assert len(pages) == session_policy.RECENT_PAGES_KEPT
    assert pages[0] == "/account/sessions" and pages[-1] == "/nowhere-6"


def test_recent_pages_go_with_the_session(app, client, auth, user, clock):
    auth.login()
    clock.advance(app.config["TOUCH_INTERVAL"])
    client.get("/profile")
    auth.logout()
    auth.login()
    assert recent(client) == ["/account/sessions"]


def test_anonymous_visits_record_nothing(app, client):
    for path in ("/", "/basket", "/login"):
        client.get(path)
    assert store_files(app) == {}
