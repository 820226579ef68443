"""The poll fast path: it answers exactly as the Flask route would, never enters Flask's
request cycle for the common cases, and hands everything else to the route."""

from __future__ import annotations

import re

import pytest
from flask import request
from helpers import PASSWORD, AuthActions, clear_store, store_files

HTMX = {"HX-Request": "true"}
CSRF_VALUE = re.compile(r'name="csrf_token" value="[^"]*"')


@pytest.fixture
def flask_hits(app):
    """How many requests reached Flask's request cycle."""
    hits: list[str] = []
    app.before_request(lambda: hits.append(request.path))
    return hits


def via_route(app, client, **kwargs):
    """The same request answered by the Flask route, with the fast path out of the way."""
    fast = app.wsgi_app
    app.wsgi_app = fast.wsgi_app
    try:
        return client.get("/session", **kwargs)
    finally:
        app.wsgi_app = fast


def comparable(response):
    body = CSRF_VALUE.sub("csrf", response.get_data(as_text=True))  # signed per second
    headers = {k: v for k, v in response.headers.items() if k not in ("Content-Length",)}
    headers["Vary"] = ", ".join(sorted(response.headers["Vary"].split(", ")))
    data = response.json if response.is_json else body
    return response.status_code, headers.get("Content-Type"), data, sorted(headers.items())


@pytest.mark.parametrize("headers", [{}, HTMX, {**HTMX, "HX-Boosted": "true"}])
@pytest.mark.parametrize("signed_in", [False, True])
def test_fast_path_answers_exactly_as_the_route(app, client, auth, user, headers, signed_in):
    if signed_in:
        auth.login()
    fast = client.get("/session", headers=headers)
    route = via_route(app, client, headers=headers)
    assert comparable(fast) == comparable(route)


def test_unchanged_poll_is_204_on_both_paths(app, client, auth, user):
    auth.login()
    token = re.search(r'data-state="([^"]+)"', client.get("/session", headers=HTMX).text)[1]
    headers = {**HTMX, "X-Session-State": token}
    assert client.get("/session", headers=headers).status_code == 204
    assert via_route(app, client, headers=headers).status_code == 204


def test_common_polls_never_enter_flask(app, client, auth, user, flask_hits):
    auth.login()
    flask_hits.clear()
    for headers in ({}, HTMX):
        client.get("/session", headers=headers)
    app.test_client().get("/session")  # an anonymous browser, no cookie at all
    assert flask_hits == []


@pytest.mark.parametrize("situation", ["expired", "stale_cookie", "required_and_signed_out"])
def test_unusual_polls_go_to_the_route(app, client, auth, user, clock, flask_hits, situation):
    auth.login()
    headers = {}
    if situation == "expired":
        clock.advance(app.config["IDLE_TIMEOUT"])
    elif situation == "stale_cookie":
        clear_store(app)
    else:
        auth.logout()
        headers = {
            **HTMX,
            "X-Session-Required": "true",
            "HX-Current-URL": "http://localhost/profile",
        }
    flask_hits.clear()
    response = client.get("/session", headers=headers)
    assert flask_hits == ["/session"]
    if situation == "required_and_signed_out":
        assert response.headers["HX-Redirect"] == "/login?next=%2Fprofile"
    else:
        assert response.json == {}


def test_fast_path_never_writes(app, client, auth, user, clock):
    auth.login()
    before = store_files(app)
    for i in range(50):
        clock.advance(1)
        response = client.get("/session", headers=HTMX if i % 2 else {})
        assert "Set-Cookie" not in response.headers
    assert store_files(app) == before


def test_fast_path_sign_out_button_posts(app, client, auth, user):
    """The CSRF token the fast path signs is one Flask-WTF accepts."""
    auth.login()
    html = client.get("/session", headers=HTMX).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)[1]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/session").json == {}


def test_revoked_session_is_dead_at_the_next_fast_poll(app, client, auth, user):
    other = app.test_client()
    AuthActions(other).login()
    auth.login()
    assert other.get("/session").json != {}
    from helpers import csrf_token

    client.post(
        "/account/sessions/revoke-others",
        data={"csrf_token": csrf_token(client), "password": PASSWORD},
    )
    assert other.get("/session").json == {}


def test_an_old_user_cache_costs_one_query_not_the_route(
    app, client, auth, user, clock, flask_hits
):
    """A tab left open past the touch interval: the fast path loads the user itself."""
    from sqlalchemy import event

    from webapp.db import engine_of

    auth.login()
    clock.advance(app.config["TOUCH_INTERVAL"])
    queries: list[str] = []
    event.listen(engine_of(app), "before_cursor_execute", lambda *a: queries.append(a[2]))
    flask_hits.clear()
    assert client.get("/session").json["user"]["username"] == "alice"
    assert flask_hits == [] and len(queries) == 1


def test_a_user_deleted_behind_the_apps_back_goes_to_the_route(
    app, client, auth, user, clock, flask_hits
):
    """(Deleting through users.delete_user also ends the sessions; a row removed by hand
    must still not show a user once the cache is old.)"""
    from sqlalchemy import delete

    from webapp.db import get_db
    from webapp.models import User

    auth.login()
    clock.advance(app.config["TOUCH_INTERVAL"])
    with app.app_context():
        get_db().execute(delete(User))
        get_db().commit()
    flask_hits.clear()
    assert client.get("/session").json == {}
    assert flask_hits == ["/session"]


def test_cached_widget_is_never_another_sessions(app, user):
    """Fragments are cached per state token, which covers each session's CSRF token."""
    first, second = app.test_client(), app.test_client()
    AuthActions(first).login()
    AuthActions(second).login()
    one = re.search(CSRF_VALUE, first.get("/session", headers=HTMX).text)[0]
    two = re.search(CSRF_VALUE, second.get("/session", headers=HTMX).text)[0]
    three = re.search(CSRF_VALUE, first.get("/session", headers=HTMX).text)[0]
    assert one == three != two


def test_cached_widget_still_tells_the_time_left(app, client, auth, user, clock):
    auth.login()
    first = client.get("/session", headers=HTMX).text
    clock.advance(7)
    second = client.get("/session", headers=HTMX).text
    left = [int(re.search(r'data-expires-in="(\d+)"', page)[1]) for page in (first, second)]
    assert left[0] - left[1] == 7


def test_idle_tabs_share_one_query_per_user_per_touch_interval(app, user, clock):
    from sqlalchemy import event

    from webapp.db import engine_of

    tabs = [app.test_client() for _ in range(3)]
    for tab in tabs:
        AuthActions(tab).login()
    clock.advance(app.config["TOUCH_INTERVAL"])
    queries: list[str] = []
    event.listen(engine_of(app), "before_cursor_execute", lambda *a: queries.append(a[2]))
    for _ in range(3):
        for tab in tabs:
            assert tab.get("/session").json["user"]["username"] == "alice"
    assert len(queries) == 1
