"""GET /session: its answers in each state, its headers, and that it never writes."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import cachelib.file
import pytest
from helpers import PASSWORD, AuthActions, store_files

from webapp import create_app
from webapp.db import get_db
from webapp.sessions import files as session_files
from webapp.users import create_user

#: next-auth's `expires`: JavaScript's toISOString, to the millisecond.
EXPIRES_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def parse_expires(value: str) -> float:
    assert EXPIRES_FORMAT.match(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_anonymous_poll_is_an_empty_object_with_no_cookie(client):
    response = client.get("/session")
    assert response.status_code == 200
    assert response.json == {}
    assert "Set-Cookie" not in response.headers


def test_headers_forbid_caching_and_name_what_the_answer_varies_on(client):
    for headers in ({}, {"HX-Request": "true"}):
        response = client.get("/session", headers=headers)
        assert response.headers["Cache-Control"] == "private, no-store"
        assert {"Cookie", "HX-Request", "Accept"} <= set(response.vary)


def test_signed_in_poll_shows_the_user_and_the_true_end(app, client, auth, user, clock):
    signed_in = clock.time
    auth.login()
    clock.advance(10)
    body = client.get("/session").json
    assert body["user"] == {
        "id": str(user.id),
        "username": "alice",
        "name": "Alice Example",
        "email": "alice@example.com",
    }
    assert parse_expires(body["expires"]) == int(signed_in + app.config["IDLE_TIMEOUT"])


def test_v3_3_2_absolute_timeout_ends_even_an_active_session(app_config, clock):
    from helpers import PASSWORD, AuthActions

    from webapp import create_app
    from webapp.db import get_db
    from webapp.users import create_user

    app = create_app({**app_config, "IDLE_TIMEOUT": 600, "ABSOLUTE_TIMEOUT": 900})
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()
    start = clock.time
    AuthActions(client).login()
    clock.advance(400)
    assert client.get("/profile").status_code == 200  # activity: the idle end is now +1000
    body = client.get("/session").json
    assert parse_expires(body["expires"]) == int(start + 900)  # the absolute end comes first
    clock.advance(499)
    assert client.get("/profile").status_code == 200
    clock.advance(1)
    assert client.get("/session").json == {}
    assert client.get("/profile").status_code == 302


def test_htmx_poll_returns_the_widget_fragment(client, auth, user):
    anonymous = client.get("/session", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'data-session-status="unauthenticated"' in anonymous
    assert "Please log in to see your profile." in anonymous
    assert "<html" not in anonymous
    auth.login()
    signed_in = client.get("/session", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'id="session-widget"' in signed_in
    assert 'data-session-status="authenticated"' in signed_in
    assert "Welcome, Alice Example!" in signed_in
    assert 'action="/logout"' in signed_in and 'name="csrf_token"' in signed_in


def test_polls_write_nothing(app, client, auth, user, clock):
    auth.login()
    before = store_files(app)
    for i in range(100):
        clock.advance(5)  # well past the touch interval: a real request would write now
        headers = {"HX-Request": "true"} if i % 2 else {}
        response = client.get("/session", headers=headers)
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers
    assert store_files(app) == before


def test_anonymous_polls_create_nothing(app, client):
    for headers in ({}, {"HX-Request": "true"}, {"Accept": "application/json"}):
        for _ in range(20):
            assert "Set-Cookie" not in client.get("/session", headers=headers).headers
    assert store_files(app) == {}


def test_v3_3_2_idle_timeout_holds_while_a_tab_polls(app, client, auth, user, clock):
    auth.login()
    idle = app.config["IDLE_TIMEOUT"]
    for _ in range(idle // 60):
        clock.advance(60)
        client.get("/session")
    clock.advance(1)
    assert client.get("/session").json == {}


def test_real_requests_extend_the_session_at_most_once_per_touch_interval(
    app, client, auth, user, clock
):
    auth.login()
    touch = app.config["TOUCH_INTERVAL"]
    before = store_files(app)
    clock.advance(touch - 1)
    client.get("/profile")
    assert store_files(app) == before  # inside the interval: no write
    clock.advance(1)
    client.get("/profile")
    assert store_files(app) != before  # activity recorded
    body = client.get("/session").json
    assert parse_expires(body["expires"]) == int(clock.time + app.config["IDLE_TIMEOUT"])


def test_v3_3_1_expired_session_is_dead_and_deleted_on_first_sight(app, client, auth, user, clock):
    auth.login()
    assert len(store_files(app)) == 1
    clock.advance(app.config["IDLE_TIMEOUT"])
    response = client.get("/session")
    assert response.json == {}
    assert "Set-Cookie" not in response.headers
    assert store_files(app) == {}
    assert client.get("/profile").status_code == 302


def test_csrf_endpoint_returns_a_token(client):
    response = client.get("/csrf")
    assert response.status_code == 200
    assert len(response.json["csrfToken"]) > 20
    assert response.headers["Cache-Control"] == "private, no-store"


def test_v3_3_2_store_ttl_is_the_sessions_remaining_life(app_config, clock):
    """No store entry outlives its session: its TTL is the time left to the nearer end."""
    import struct
    import time

    from helpers import PASSWORD, AuthActions

    from webapp import create_app
    from webapp.db import get_db
    from webapp.users import create_user

    app = create_app({**app_config, "IDLE_TIMEOUT": 600, "ABSOLUTE_TIMEOUT": 900})
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()

    def ttl() -> float:
        if app.config["SESSION_BACKEND"] == "redis":
            (key,) = store_files(app)
            return float(app.session_interface.client.ttl(key))
        (data,) = store_files(app).values()
        (expires,) = struct.unpack("I", data[0][:4])  # cachelib's expiry header
        return expires - time.time()

    AuthActions(client).login()
    assert abs(ttl() - 600) <= 2  # the idle end comes first
    clock.advance(400)
    client.get("/profile")  # activity recorded: idle end +1000, absolute end +900
    assert abs(ttl() - 500) <= 2


@pytest.fixture
def absolute_end_first(app_config, clock, monkeypatch):
    """An app whose sessions end at their absolute end (600 s idle, 900 s absolute), and a
    way to write alice's session at a moment whose fraction of a second differs from that
    end's: the store TTL is then not a whole number of seconds. The file store's expiry
    header (written and read) follows the fake clock too."""
    monkeypatch.setattr(session_files, "time", clock)
    monkeypatch.setattr(cachelib.file, "time", clock)
    app = create_app({**app_config, "IDLE_TIMEOUT": 600, "ABSOLUTE_TIMEOUT": 900})
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()
    clock.advance(0.7)
    AuthActions(client).login()  # at T + 0.7: the absolute end is T + 900.7
    ends = clock.time + 900
    clock.advance(400.5)
    assert client.get("/profile").status_code == 200  # a write at T + 401.2: 499.5 s left
    return app, client, ends


def test_expires_is_given_to_the_millisecond_like_next_auth(absolute_end_first):
    _app, client, ends = absolute_end_first
    expires = client.get("/session").json["expires"]
    assert EXPIRES_FORMAT.match(expires), expires
    assert expires == "2027-01-15T08:15:00.700Z"  # 1_800_000_900.7
    assert parse_expires(expires) == pytest.approx(ends, abs=0.001)


def test_the_store_keeps_a_session_until_the_expires_it_advertised(
    absolute_end_first, clock, monkeypatch
):
    """cachelib's expiry counts from int(time()) and the TTL was rounded down: an entry could
    vanish up to a second or two before the `expires` /session had advertised (`ends`, to
    the millisecond: the test above)."""
    app, client, ends = absolute_end_first
    written = clock.time
    expires = math.floor(ends * 1000) / 1000
    if app.config["SESSION_BACKEND"] == "redis":
        # Redis counts TTLs on its own clock: check the TTL of a write like the last one.
        ttls = []
        redis_set = app.session_interface.client.set
        monkeypatch.setattr(
            app.session_interface.client,
            "set",
            lambda *args, **kwargs: ttls.append(kwargs["ex"]) or redis_set(*args, **kwargs),
        )
        with client.session_transaction() as session:
            session.modified = True
        assert ttls and ttls[-1] >= expires - written
        return
    clock.time = expires - 0.001
    assert client.get("/session").json["user"]["username"] == "alice"
    assert client.get("/profile").status_code == 200
    clock.time = expires + 0.001
    assert client.get("/session").json == {}


def count_queries(app):
    """A list that grows by one per SQL statement the app runs."""
    from sqlalchemy import event

    from webapp.db import engine_of

    seen: list[str] = []
    event.listen(engine_of(app), "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_signed_in_poll_runs_no_query_while_the_user_is_cached(app, client, auth, user, clock):
    auth.login()
    queries = count_queries(app)
    for headers in ({}, {"HX-Request": "true"}):
        assert client.get("/session", headers=headers).status_code == 200
    assert queries == []


def test_poll_after_the_touch_interval_runs_one_query_and_writes_nothing(
    app, client, auth, user, clock
):
    auth.login()
    clock.advance(app.config["TOUCH_INTERVAL"])
    queries = count_queries(app)
    assert client.get("/session").json["user"]["username"] == "alice"
    assert len(queries) == 1 and queries[0].lstrip().upper().startswith("SELECT")


def test_a_real_request_refreshes_the_cached_user(app, client, auth, user, clock):
    auth.login()
    clock.advance(app.config["TOUCH_INTERVAL"])
    client.get("/profile")  # activity recorded, the user cached again
    queries = count_queries(app)
    client.get("/session")
    assert queries == []
