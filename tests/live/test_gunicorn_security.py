"""Against a real gunicorn with two workers: sessions that must end do end (ASVS V3.3).

Every client here is its own cookie jar, and every request a new connection (urllib sends
`Connection: close`), so either worker may serve it: an ended session has to be gone from the
shared store and database, not just from one worker's memory. Each test first shows the state
it is about to destroy, so that it fails when nothing is destroyed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from live_client import (
    REMEMBER,
    SESSION,
    assert_sent_to_sign_in,
    change_password,
    replaying,
    signed_in,
)

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import LiveServer

pytestmark = pytest.mark.live

NEW_PASSWORD = "a different, equally long passphrase"


def test_v3_3_4_revoke_others_ends_a_second_client_at_its_next_poll(
    live_server: LiveServer,
) -> None:
    first = signed_in(live_server)
    second = signed_in(live_server, remember=True)
    assert second.username() == live_server.username  # B's poll sees the user before

    revoked = first.request(
        "/account/sessions/revoke-others",
        data={"password": live_server.password, "csrf_token": first.csrf("/account/sessions")},
    )
    assert revoked.status == 303, revoked.text
    assert revoked.location == ("/account/sessions", "")

    # B's very next request, a poll, finds no session, whichever worker answers it.
    assert second.state() == {}
    # Its remember-me token was ended too: it cannot sign B back in.
    assert_sent_to_sign_in(second)

    # A is untouched.
    assert first.username() == live_server.username
    assert first.request("/account/sessions").status == 200


def test_v3_3_1_replayed_remember_cookie_is_dead_after_sign_out(live_server: LiveServer) -> None:
    leaving = signed_in(live_server, remember=True)
    stolen = leaving.cookie(REMEMBER)
    assert stolen

    # The mechanism works: another sign-in's remember cookie alone, in a fresh client, signs
    # it in on a real request (the /session poll is read-only and never redeems one).
    staying = signed_in(live_server, remember=True)
    remembered = replaying(live_server, **{REMEMBER: staying.cookie(REMEMBER) or ""})
    assert remembered.state() == {}
    profile = remembered.request("/profile")
    assert profile.status == 200, f"GET /profile: {profile.status}\n{profile.text}"
    assert f"Welcome, {live_server.name}!" in profile.text
    assert remembered.username() == live_server.username

    signed_out = leaving.request("/logout", data={"csrf_token": leaving.csrf("/logout")})
    assert signed_out.status == 303, signed_out.text
    assert signed_out.location == ("/login", "reason=signed-out")
    assert leaving.cookie(SESSION) is None
    assert leaving.cookie(REMEMBER) is None, "sign-out must delete the remember cookie"
    assert leaving.state() == {}

    # The signed-out device's remember cookie, replayed: the token is gone on the server.
    assert_sent_to_sign_in(replaying(live_server, **{REMEMBER: stolen}))
    # Signing out one device leaves the others alone.
    assert remembered.username() == live_server.username
    assert staying.username() == live_server.username


def test_v3_3_3_replayed_pre_password_change_cookie_is_dead(live_server: LiveServer) -> None:
    """Changes alice's password and sets it back, so it runs last in this module (the server,
    and so alice, are shared by this module's tests only)."""
    changer = signed_in(live_server)
    other = signed_in(live_server, remember=True)
    old_sid = changer.cookie(SESSION)
    assert old_sid
    # Before: the cookie, replayed from elsewhere, is as good as the original.
    assert replaying(live_server, **{SESSION: old_sid}).username() == live_server.username
    assert other.username() == live_server.username

    changed = change_password(changer, live_server.password, NEW_PASSWORD)
    assert changed.status == 303, changed.text
    try:
        assert changed.location == ("/account/sessions", "")
        new_sid = changer.cookie(SESSION)
        assert new_sid, "the password change dropped the session cookie"
        assert new_sid != old_sid, "a password change must give the session a new id"

        assert replaying(live_server, **{SESSION: old_sid}).state() == {}
        assert other.state() == {}
        assert_sent_to_sign_in(other)  # and its remember-me token is gone
        assert changer.username() == live_server.username
        assert changer.request("/account/sessions").status == 200
    finally:
        # Put alice's password back (the session is still fresh) whatever happened above.
        restored = change_password(changer, NEW_PASSWORD, live_server.password)
        assert restored.status == 303, restored.text
    signed_in(live_server)  # the original password works again


def test_v3_4_no_page_is_stored_and_sign_out_deletes_only_this_sites_cookies(
    live_server: LiveServer,
) -> None:
    leaving = signed_in(live_server, remember=True)
    for path in ("/profile", "/account/sessions", "/api/hello", "/logout"):
        page = leaving.request(path)
        assert page.status == 200 and page.headers["Cache-Control"] == "no-store", path

    signed_out = leaving.request("/logout", data={"csrf_token": leaving.csrf("/logout")})
    assert signed_out.status == 303, signed_out.text
    # "cookies" would delete the cookies of every site under the same registrable domain.
    assert signed_out.headers["Clear-Site-Data"] == '"cache", "storage"'
    deleted = {
        cookie.split("=", 1)[0]
        for cookie in signed_out.headers.get_all("Set-Cookie") or []
        if "Max-Age=0" in cookie
    }
    assert deleted == {SESSION, REMEMBER}
    assert signed_out.headers["Cache-Control"] == "no-store"
