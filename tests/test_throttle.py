"""Sign-in throttling (ASVS 2.2.1): per username and per address, shared through the database."""

from __future__ import annotations

import re

from helpers import PASSWORD, AuthActions

from webapp import throttle


def fail(auth, username="alice", times=1):
    return [auth.login(username, "wrong password!") for _ in range(times)][-1]


def test_v2_2_1_five_failures_lock_the_username_with_retry_after(client, auth, user):
    assert fail(auth, times=5).status_code == 401
    response = auth.login()  # the right password
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(throttle.FIRST_DELAY)
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    assert client.get("/session").json == {}  # a correct password does not bypass the lock


def test_v2_2_1_unknown_usernames_lock_exactly_the_same(client, auth, user):
    known = fail(auth, "alice", times=6)
    unknown = fail(auth, "nobody-here", times=6)
    assert (known.status_code, unknown.status_code) == (429, 429)
    assert known.headers["Retry-After"] == unknown.headers["Retry-After"]

    def page(response, username):
        main = response.get_data(as_text=True).split("<main>")[1].replace(username, "X")
        return re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "", main)

    assert page(known, "alice") == page(unknown, "nobody-here")


def test_v2_2_1_lock_lifts_after_the_delay_and_then_grows(app, client, auth, user, clock):
    fail(auth, times=5)
    clock.advance(throttle.FIRST_DELAY)
    assert fail(auth).status_code == 401  # lock over: the attempt is judged (and fails)
    response = auth.login()
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) == throttle.FIRST_DELAY * 2  # the delay grew
    clock.advance(throttle.FIRST_DELAY * 2)
    assert auth.login().status_code == 303


def test_v2_2_1_delay_doubles_per_failure_up_to_the_window():
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    delays = [throttle._lock_seconds(n, 5, now, now) for n in (4, 5, 6, 7, 30)]
    assert delays == [0, 30, 60, 120, int(throttle.WINDOW.total_seconds())]


def test_v2_2_1_failures_age_out_of_the_window(client, auth, user, clock):
    fail(auth, times=4)
    clock.advance(throttle.WINDOW.total_seconds() + 1)
    fail(auth, times=4)
    assert auth.login().status_code == 303


def test_v2_2_1_success_resets_the_count(client, auth, user):
    fail(auth, times=4)
    assert auth.login().status_code == 303
    auth.logout()
    fail(auth, times=4)
    assert auth.login().status_code == 303


def test_v2_2_1_one_address_spraying_many_usernames_is_locked(app, user):
    browser = app.test_client()
    auth = AuthActions(browser)
    for i in range(throttle.IP_LIMIT):
        fail(auth, f"user{i}")
    assert auth.login().status_code == 429
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert AuthActions(other).login().status_code == 303  # another address is not locked


def test_v2_2_1_counts_are_shared_by_every_app_instance(app_config, user, app):
    """Two app instances on one database (two workers or hosts) share the counts."""
    from webapp import create_app

    twin = create_app(app_config)
    fail(AuthActions(app.test_client()), times=3)
    fail(AuthActions(twin.test_client()), times=2)
    assert AuthActions(twin.test_client()).login().status_code == 429
    twin.extensions["webapp.db"].kw["bind"].dispose()


def test_v2_2_1_reauthentication_counts_against_the_same_lock(app, client, auth, user):
    auth.login()
    from helpers import csrf_token

    for _ in range(5):
        client.post(
            "/account/reauthenticate",
            data={"csrf_token": csrf_token(client), "password": "wrong password!"},
        )
    response = client.post(
        "/account/reauthenticate", data={"csrf_token": csrf_token(client), "password": PASSWORD}
    )
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_history_shows_failed_attempts_to_the_owner(client, auth, user):
    fail(auth)
    auth.login()
    html = client.get("/account/sessions").get_data(as_text=True)
    assert "Wrong password" in html and "Signed in" in html
