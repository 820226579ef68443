"""Against a real gunicorn with two workers: ending a remembered device's session forgets the
device. Its next request, with every cookie it had, is sent to the sign-in form instead of
being signed straight back in by its remember-me cookie."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from live_client import REMEMBER, SESSION, Client, assert_sent_to_sign_in, replaying, signed_in

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import LiveServer

pytestmark = pytest.mark.live

THIS_DEVICE = re.compile(r'<li class="device this-device">(.*?)</li>', re.S)


def this_device_row(client: Client) -> tuple[str, str]:
    """The reference of the client's own session on /account/sessions, and its row."""
    page = client.request("/account/sessions")
    assert page.status == 200, page.text
    row = THIS_DEVICE.search(page.text)
    assert row, page.text
    ref = re.search(r"/account/sessions/([0-9a-f]{16})/revoke", row.group(1))
    assert ref, row.group(1)
    return ref.group(1), row.group(1)


def test_revoking_a_remembered_device_signs_it_out_for_good(live_server: LiveServer) -> None:
    laptop = signed_in(live_server)
    phone = signed_in(live_server, remember=True)
    # The phone's browser reopens: its remember cookie signs it in again, on a new token.
    restored = replaying(live_server, **{REMEMBER: phone.cookie(REMEMBER) or ""})
    assert restored.request("/profile").status == 200
    ref, row = this_device_row(restored)
    assert "Remembered" in row
    saved = {SESSION: restored.cookie(SESSION) or "", REMEMBER: restored.cookie(REMEMBER) or ""}
    assert all(saved.values())
    assert saved[REMEMBER] != phone.cookie(REMEMBER)

    revoked = laptop.request(
        f"/account/sessions/{ref}/revoke",
        data={"password": live_server.password, "csrf_token": laptop.csrf("/account/sessions")},
    )
    assert revoked.status == 303, revoked.text

    # Its next request, with the cookies it saved, whichever worker answers: 302 to /login.
    assert_sent_to_sign_in(replaying(live_server, **saved))
    assert_sent_to_sign_in(restored)
    assert laptop.username() == live_server.username
