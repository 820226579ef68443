"""Sign-in throttling (ASVS 2.2.1): per username and per address, shared through the database."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

from helpers import PASSWORD, AuthActions, csrf_token

from webapp import throttle
from webapp.db import get_db
from webapp.models import SignInEvent, User
from webapp.passwords import Passwords


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
        main = response.get_data(as_text=True).split("<main ")[1].replace(username, "X")
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


def test_history_shows_failed_attempts_to_the_owner(client, auth, user):
    fail(auth)
    auth.login()
    html = client.get("/account/sessions").get_data(as_text=True)
    assert "Wrong password" in html and "Signed in" in html


# attempts reserved before the hash (issue 12, hole 4) ------------------------------------------


def parallel_sign_ins(app, usernames, monkeypatch):
    """Send one wrong password per username, all at once from separate browsers on one
    address; each password check is held until every request has either reached its check or
    been answered, so that on a racy throttle all of them get to be checked. Returns the
    statuses and how many checks ran."""
    checks = []
    arrived = threading.Condition()
    settled = [0]
    real_verify = Passwords.verify

    def arrive():
        with arrived:
            settled[0] += 1
            arrived.notify_all()

    def held_verify(self, password_hash, password):
        checks.append(password)
        arrive()
        with arrived:
            arrived.wait_for(lambda: settled[0] >= len(usernames), timeout=20)
        return real_verify(self, password_hash, password)

    monkeypatch.setattr(Passwords, "verify", held_verify)
    browsers = [app.test_client() for _ in usernames]
    tokens = [csrf_token(browser) for browser in browsers]
    start = threading.Barrier(len(usernames))

    def attempt(i):
        data = {"username": usernames[i], "password": "wrong password!", "csrf_token": tokens[i]}
        start.wait()
        status = browsers[i].post("/login", data=data).status_code
        if status == 429:
            arrive()
        return status

    with ThreadPoolExecutor(len(usernames)) as pool:
        statuses = list(pool.map(attempt, range(len(usernames))))
    return sorted(statuses), len(checks)


def test_hole4_twelve_wrong_passwords_at_once_get_only_five_checks(app, user, monkeypatch):
    statuses, checks = parallel_sign_ins(app, ["alice"] * 12, monkeypatch)
    assert checks == throttle.USERNAME_LIMIT
    assert statuses == [401] * 5 + [429] * 7


def test_hole4_the_address_limit_holds_under_parallel_attempts_too(app, user, monkeypatch):
    monkeypatch.setattr(throttle, "IP_LIMIT", 3)
    statuses, checks = parallel_sign_ins(app, [f"user{i}" for i in range(8)], monkeypatch)
    assert checks == 3
    assert statuses == [401] * 3 + [429] * 5


def test_hole4_an_attempt_never_finished_counts_as_a_failure(app, client, auth, user, clock):
    """A worker killed between the reservation and the hash leaves a pending attempt: it
    counts as a failure, and like one it ages out."""
    with app.test_request_context():
        for _ in range(throttle.USERNAME_LIMIT):
            assert throttle.reserve_sign_in(get_db(), "alice") == 0
    response = auth.login()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(throttle.FIRST_DELAY)
    clock.advance(throttle.FIRST_DELAY)
    assert auth.login().status_code == 303


# the user's own confirmations are throttled apart (issue 12, hole 5) ---------------------------


def lock_out_at_sign_in(app, username="alice"):
    """A stranger fails the sign-in form until the username is locked."""
    stranger = AuthActions(app.test_client())
    fail(stranger, username, times=throttle.USERNAME_LIMIT)
    assert stranger.login(username).status_code == 429


def confirm(client, path, password=PASSWORD, **fields):
    data = {"csrf_token": csrf_token(client), "password": password, **fields}
    return client.post(path, data=data)


def test_hole5_a_stranger_locking_sign_in_cannot_stop_revoking_other_sessions(
    app, client, auth, user
):
    auth.login()
    attacker = app.test_client()
    assert AuthActions(attacker).login().status_code == 303  # the attacker's session
    lock_out_at_sign_in(app)
    response = confirm(client, "/account/sessions/revoke-others")
    assert response.status_code == 303
    assert attacker.get("/session").json == {}


def test_hole5_a_stranger_locking_sign_in_cannot_stop_reauthentication_or_a_new_password(
    app, client, auth, user, clock
):
    auth.login()
    clock.advance(app.config["FRESH_TIMEOUT"] + 1)  # the password is asked for again
    lock_out_at_sign_in(app)
    response = confirm(client, "/account/reauthenticate", next="/account/password")
    assert (response.status_code, response.headers["Location"]) == (303, "/account/password")
    new = "a brand new passphrase"
    response = client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(client),
            "current_password": PASSWORD,
            "new_password": new,
            "confirm": new,
        },
    )
    assert response.status_code == 303
    assert AuthActions(app.test_client()).login(password=new).status_code == 429  # still locked


def test_v2_2_1_wrong_confirmations_lock_confirmations_but_not_sign_in(
    app, client, auth, user, clock
):
    """Someone at the user's unlocked screen guesses at most CONFIRM_LIMIT passwords per lock;
    the user's own slips do not lock them out of signing in elsewhere."""
    auth.login()
    for _ in range(throttle.CONFIRM_LIMIT):
        assert confirm(client, "/account/reauthenticate", "wrong password!").status_code == 401
    for path in ("/account/reauthenticate", "/account/sessions/revoke-others"):
        response = confirm(client, path)  # the right password
        assert response.status_code == 429
        assert response.headers["Retry-After"] == str(throttle.FIRST_DELAY)
        assert "Too many wrong passwords" in response.get_data(as_text=True)
    assert AuthActions(app.test_client()).login().status_code == 303
    clock.advance(throttle.FIRST_DELAY)
    assert confirm(client, "/account/reauthenticate").status_code == 303


def test_hole5_a_right_confirmation_starts_the_count_afresh(app, client, auth, user):
    auth.login()
    for _ in range(throttle.CONFIRM_LIMIT - 1):
        confirm(client, "/account/reauthenticate", "wrong password!")
    assert confirm(client, "/account/sessions/revoke-others").status_code == 303
    for _ in range(throttle.CONFIRM_LIMIT - 1):
        confirm(client, "/account/reauthenticate", "wrong password!")
    assert confirm(client, "/account/reauthenticate").status_code == 303


# refusals are recorded in bounded form (issue 12, hole 9) --------------------------------------


def sign_in_rows(app):
    with app.app_context():
        return get_db().query(SignInEvent).count()


def test_hole9_refused_posts_from_a_locked_address_add_at_most_one_row(app, user):
    browser = app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = "x" * 500
    auth = AuthActions(browser)
    fail(auth, times=throttle.USERNAME_LIMIT)
    before = sign_in_rows(app)
    data = {"username": "alice", "password": PASSWORD, "csrf_token": csrf_token(browser)}
    for _ in range(30):
        assert browser.post("/login", data=data).status_code == 429
    assert sign_in_rows(app) <= before + 1
    with app.app_context():
        locked = get_db().query(SignInEvent).filter_by(outcome="locked").one()
        assert len(locked.user_agent) == throttle.REFUSED_USER_AGENT


def test_hole9_a_thousand_refusals_of_a_locked_address_stay_bounded(app, user, monkeypatch):
    """The address is locked: whatever username each attempt names, the table hardly grows."""
    monkeypatch.setattr(throttle, "IP_LIMIT", throttle.USERNAME_LIMIT)
    fail(AuthActions(app.test_client()), times=throttle.USERNAME_LIMIT)
    before = sign_in_rows(app)
    headers = {"User-Agent": "y" * 500}
    with app.test_request_context(headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        db = get_db()
        waits = {throttle.reserve_sign_in(db, f"user{i % 50}") for i in range(1000)}
    assert waits == {throttle.FIRST_DELAY}
    assert sign_in_rows(app) - before <= 2


def test_hole4_a_settled_attempt_is_never_rewritten_by_a_later_event(app, user):
    """A failure stays a failure whatever else the request records (a remember-me sign-in
    rendering the answer); a confirmation that is also a re-authentication is one row."""
    with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        db = get_db()
        alice = db.get(User, user.id)
        assert throttle.reserve_sign_in(db, "alice") == 0
        throttle.record(db, "alice", "failure", "password", alice)
        throttle.record(db, "alice", "success", "remember", alice)
    with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        db = get_db()
        alice = db.get(User, user.id)
        assert throttle.reserve_confirmation(db, alice) == 0
        throttle.record(db, "alice", "success", throttle.CONFIRM, alice)
        throttle.record(db, "alice", "success", throttle.CONFIRM, alice)
        rows = db.query(SignInEvent).order_by(SignInEvent.id).all()
        assert [(row.outcome, row.method) for row in rows] == [
            ("failure", "password"),
            ("success", "remember"),
            ("success", throttle.CONFIRM),
        ]
