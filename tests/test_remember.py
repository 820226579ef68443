"""Remember me against revocation and theft: ending a session ends its remembered device, however
it is ended (sessions page, CLI, sign out everywhere else, sign-out, password change), and an
old copy of a rotated remember-me cookie ends the whole chain and tells the user."""

from __future__ import annotations

import json
import logging
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD, AuthActions, csrf_token

from webapp.db import get_db
from webapp.models import RememberToken, UserSession
from webapp.sessions.remember import KEPT_PER_CHAIN, REUSE_GRACE, REUSE_NOTICE

NEW_PASSWORD = "a brand new passphrase"
NOTICE = "Someone used an old copy"


# -- helpers -------------------------------------------------------------------------------


def remember_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("remember")
    assert cookie is not None and cookie.value
    return cookie.value


def browser_with(app: Flask, remember: str) -> FlaskClient:
    """A browser that holds only this remember-me cookie (closed and reopened, or a copy)."""
    browser = app.test_client()
    browser.set_cookie("remember", remember)
    return browser


def signed_in(client: FlaskClient) -> bool:
    """Whether a protected page is served (not a redirect to the sign-in form)."""
    response = client.get("/profile")
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login")
        return False
    assert response.status_code == 200
    return True


def post(client: FlaskClient, path: str, **data: str):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf_token": csrf_token(client), **data})


def this_device_ref(client: FlaskClient) -> str:
    html = client.get("/account/sessions").get_data(as_text=True)
    row = re.search(
        r'<li class="device this-device">.*?/account/sessions/([\w-]+)/revoke', html, re.S
    )
    assert row
    return row.group(1)


def session_rows(app: Flask) -> list[UserSession]:
    with app.app_context():
        return list(get_db().query(UserSession))


def tokens(app: Flask) -> list[RememberToken]:
    with app.app_context():
        return list(get_db().query(RememberToken))


def events_logged(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "webapp.events"]


@pytest.fixture
def laptop(app: Flask, user) -> FlaskClient:  # type: ignore[no-untyped-def]
    """The device the user manages their sessions from (signed in without remember me)."""
    browser = app.test_client()
    assert AuthActions(browser).login().status_code == 303
    return browser


@pytest.fixture
def phone(app: Flask, user) -> FlaskClient:  # type: ignore[no-untyped-def]
    """A remembered device: signed in with "remember me"."""
    browser = app.test_client()
    assert AuthActions(browser).login(remember=True).status_code == 303
    return browser


def assert_forgotten(app: Flask, device: FlaskClient, saved_cookie: str) -> None:
    """The device's next request is signed out, and so is any copy of its cookie; no new
    session appears."""
    before = len(session_rows(app))
    assert not signed_in(device)
    assert device.get("/api/hello").status_code == 401
    assert not signed_in(browser_with(app, saved_cookie))
    assert len(session_rows(app)) == before


# -- hole 1: ending a session ends its remembered device ----------------------------------


def test_revoking_a_remembered_session_from_the_sessions_page_forgets_the_device(
    app, laptop, phone
):
    saved = remember_cookie(phone)
    ref = this_device_ref(phone)
    response = post(laptop, f"/account/sessions/{ref}/revoke", password=PASSWORD)
    assert response.status_code == 303
    assert_forgotten(app, phone, saved)
    assert tokens(app) == []
    assert signed_in(laptop)


def test_revoking_a_restored_session_forgets_the_device(app, laptop, phone):
    """The session a remember cookie restored carries the rotated token's chain."""
    reopened = browser_with(app, remember_cookie(phone))
    assert signed_in(reopened)  # restored: a new session and a new token
    saved = remember_cookie(reopened)
    ref = this_device_ref(reopened)
    assert post(laptop, f"/account/sessions/{ref}/revoke", password=PASSWORD).status_code == 303
    assert_forgotten(app, reopened, saved)


def test_ending_this_devices_own_remembered_session_forgets_it(app, phone):
    """ "Sign out" on this device's row of the sessions page is a sign-out."""
    saved = remember_cookie(phone)
    ref = this_device_ref(phone)
    assert post(phone, f"/account/sessions/{ref}/revoke", password=PASSWORD).status_code == 303
    assert_forgotten(app, phone, saved)
    assert tokens(app) == []


def test_cli_revoke_of_a_remembered_session_forgets_the_device(app, runner, laptop, phone):
    saved = remember_cookie(phone)
    result = runner.invoke(args=["sessions", "revoke", this_device_ref(phone)])
    assert result.exit_code == 0, result.output
    assert_forgotten(app, phone, saved)
    assert signed_in(laptop)


def test_sign_out_everywhere_else_forgets_other_devices_and_keeps_this_one(app, user):
    here = app.test_client()
    AuthActions(here).login(remember=True)
    phone = app.test_client()
    AuthActions(phone).login(remember=True)
    restored = browser_with(app, remember_cookie(phone))  # the phone's chain, one rotation on
    assert signed_in(restored)
    saved_phone, saved_here = remember_cookie(restored), remember_cookie(here)

    assert post(here, "/account/sessions/revoke-others", password=PASSWORD).status_code == 303
    assert_forgotten(app, restored, saved_phone)
    assert not signed_in(phone)
    assert signed_in(here)
    assert signed_in(browser_with(app, saved_here))  # this device is still remembered


def test_sign_out_ends_the_chain_of_the_session_even_without_its_cookie(app, phone):
    """The cookie was copied elsewhere and is no longer sent: signing out of the session it
    signed in still ends it."""
    saved = remember_cookie(phone)
    phone.delete_cookie("remember")
    assert AuthActions(phone).logout().status_code == 303
    assert not signed_in(browser_with(app, saved))
    assert tokens(app) == []


def test_sign_out_of_a_restored_session_ends_every_token_of_the_chain(app, phone):
    first = remember_cookie(phone)
    reopened = browser_with(app, first)
    assert signed_in(reopened)
    second = remember_cookie(reopened)
    assert AuthActions(reopened).logout().status_code == 303
    for saved in (first, second):
        assert not signed_in(browser_with(app, saved))
    assert tokens(app) == []


def test_password_change_forgets_remembered_devices(app, laptop, phone):
    saved = remember_cookie(phone)
    AuthActions(laptop).login()  # fresh, for the password page
    response = post(
        laptop,
        "/account/password",
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
        confirm=NEW_PASSWORD,
    )
    assert response.status_code == 303
    assert_forgotten(app, phone, saved)


def test_session_expiry_keeps_the_remembered_device(app, phone, clock):
    """What remember me is for: the session times out, the device signs itself back in."""
    clock.advance(app.config["IDLE_TIMEOUT"] + 1)
    assert phone.get("/session").json == {}  # expired (a poll never restores)
    assert signed_in(phone)
    rows = session_rows(app)
    assert len(rows) == 1 and rows[0].remember_series is not None


def test_sessions_page_marks_remembered_devices(app, laptop, phone):
    html = laptop.get("/account/sessions").get_data(as_text=True)
    devices = html.split('<ul class="devices">')[1].split("</ul>")[0]
    rows = re.findall(r"<li.*?</li>", devices, re.S)
    assert len(rows) == 2
    remembered = [row for row in rows if "Remembered" in row]
    assert len(remembered) == 1
    assert this_device_ref(phone) in remembered[0]
    assert "this-device" not in remembered[0]  # the laptop's row is the other one

    AuthActions(phone).logout()
    html = laptop.get("/account/sessions").get_data(as_text=True)
    assert "Remembered" not in html


# -- hole 2: an old copy of a rotated token is theft ---------------------------------------


def test_replayed_old_token_ends_the_whole_chain_and_the_user_is_told(app, phone, clock, caplog):
    """The thief copied the cookie; the victim's browser then used it (rotation). The thief's
    copy, presented later, ends every session and token of the chain."""
    caplog.set_level(logging.INFO, logger="webapp.events")
    stolen = remember_cookie(phone)
    victim = browser_with(app, stolen)  # the victim's browser reopens: token rotated
    assert signed_in(victim)
    clock.advance(REUSE_GRACE)

    thief = browser_with(app, stolen)
    assert not signed_in(thief)
    assert thief.get_cookie("remember") is None  # cleared
    assert not signed_in(victim)  # its restored session is ended...
    assert not signed_in(browser_with(app, remember_cookie(phone)))  # ...and its token
    assert not signed_in(phone)  # the chain's first session too
    assert session_rows(app) == [] and tokens(app) == []

    reused = [e for e in events_logged(caplog) if e["event"] == "remember_token_reused"]
    assert len(reused) == 1 and reused[0]["sessions_ended"] == 2
    assert stolen not in caplog.text and stolen.split(".")[0] not in caplog.text

    # The user is told once, on the page after signing in again (on any device).
    again = app.test_client()
    response = AuthActions(again).login(next="/profile")
    assert response.status_code == 303
    page = again.get("/profile").get_data(as_text=True)
    assert NOTICE in page and REUSE_NOTICE.split(",")[0] in page
    assert NOTICE not in again.get("/profile").get_data(as_text=True)
    AuthActions(app.test_client()).login()
    assert NOTICE not in app.test_client().get("/login").get_data(as_text=True)


def test_thief_who_used_the_token_first_is_signed_out_when_the_victim_returns(app, phone, clock):
    stolen = remember_cookie(phone)
    phone.delete_cookie("session")  # the victim's session is gone (browser closed)
    thief = browser_with(app, stolen)
    assert signed_in(thief)  # the thief is in, with the chain's next token
    thiefs_token = remember_cookie(thief)
    clock.advance(60)
    assert not signed_in(phone)  # the victim's old copy: theft
    assert not signed_in(thief)
    assert not signed_in(browser_with(app, thiefs_token))
    assert tokens(app) == []
    page = AuthActions(phone).login(next="/profile")
    assert page.status_code == 303
    assert NOTICE in phone.get("/profile").get_data(as_text=True)


def test_parallel_requests_within_the_grace_period_are_not_theft(app, phone, clock, caplog):
    """Two tabs reopening at once both send the token the first of them replaces."""
    caplog.set_level(logging.INFO, logger="webapp.events")
    cookie = remember_cookie(phone)
    first, second = browser_with(app, cookie), browser_with(app, cookie)
    assert signed_in(first)
    clock.advance(REUSE_GRACE - 1)
    response = second.get("/profile")
    assert response.status_code == 200
    # The second answer leaves the remember cookie alone (the first one's new token stands).
    assert not any(c.startswith("remember=") for c in response.headers.getlist("Set-Cookie"))
    assert signed_in(first) and signed_in(second)
    assert "remember_token_reused" not in [e["event"] for e in events_logged(caplog)]

    # Both sessions belong to the chain: ending either forgets the device.
    laptop = app.test_client()
    AuthActions(laptop).login()
    ref = this_device_ref(second)
    assert post(laptop, f"/account/sessions/{ref}/revoke", password=PASSWORD).status_code == 303
    assert not signed_in(browser_with(app, remember_cookie(first)))


def test_grace_period_covers_only_the_token_replaced_last(app, phone, clock):
    oldest = remember_cookie(phone)
    middle = browser_with(app, oldest)
    assert signed_in(middle)
    clock.advance(1)
    newest = browser_with(app, remember_cookie(middle))
    assert signed_in(newest)  # the chain moved on twice within the grace period
    assert not signed_in(browser_with(app, oldest))  # two rotations old: theft
    assert not signed_in(newest)
    assert tokens(app) == []


def test_replaced_tokens_kept_per_chain_are_bounded(app, phone, clock):
    cookie = remember_cookie(phone)
    for _ in range(KEPT_PER_CHAIN + 5):
        browser = browser_with(app, cookie)
        assert signed_in(browser)
        cookie = remember_cookie(browser)
        clock.advance(REUSE_GRACE)
    chain = tokens(app)
    assert len(chain) == KEPT_PER_CHAIN + 1
    assert len({token.series for token in chain}) == 1
    assert sum(token.replaced_at is None for token in chain) == 1


def test_a_forged_secret_for_an_old_selector_is_not_taken_for_theft(app, phone, clock):
    """Only the real old cookie ends the chain; a wrong secret is just refused."""
    selector = remember_cookie(phone).split(".")[0]
    assert signed_in(browser_with(app, remember_cookie(phone)))
    clock.advance(REUSE_GRACE)
    assert not signed_in(browser_with(app, f"{selector}.{'A' * 43}"))
    assert signed_in(phone)
