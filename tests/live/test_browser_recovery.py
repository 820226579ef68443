"""Password reset and email verification in Chromium, against a real gunicorn whose mail goes
to the outbox (`make run`'s default): the test reads the .eml files as a person would open
them, and follows their links. Links carry WEBAPP_BASE_URL (a name the test maps to the
server), never the Host the browser used."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import EMAIL, USERNAME, _create_user, _environment, gunicorn
from playwright.sync_api import Page, expect
from support.smtp import link_in

if TYPE_CHECKING:
    from conftest import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.browser]

BASE_URL = "http://mail-links.test"
NEW_PASSWORD = "a whole new passphrase"
TIMEOUT = 5_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    folder = tmp_path_factory.mktemp("gunicorn")
    env = _environment(folder / "instance", 1)
    env["WEBAPP_BASE_URL"] = BASE_URL
    _create_user(env)
    with gunicorn(env, folder, 1) as live:
        yield live, folder / "instance" / "outbox"


def mail_to(outbox: Path, address: str, subject: str, timeout: float = 10.0) -> EmailMessage:
    """The newest message to `address` with `subject`, once the app has written it."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(outbox.glob("*.eml")):
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if message["To"] == address and message["Subject"] == subject:
                found.append(message)
        if found:
            return found[-1]  # type: ignore[return-value]
        assert time.monotonic() < deadline, f"no mail {subject!r} to {address}"
        time.sleep(0.05)


def follow(live: LiveServer, message: EmailMessage) -> str:
    link = link_in(message)
    assert link.startswith(BASE_URL + "/"), link
    return live.url(link.removeprefix(BASE_URL))


def test_reset_a_forgotten_password_in_the_browser(
    server: tuple[LiveServer, Path], page: Page
) -> None:
    live, outbox = server
    page.goto(live.url("/login"))
    page.get_by_role("link", name="Forgot your password?").click()
    # The sign-in page's "Username or email" is an "Email" label too, until the new page is in.
    expect(page).to_have_url(live.url("/password/forgot"), timeout=TIMEOUT)
    page.get_by_label("Email", exact=True).fill(EMAIL)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.locator("main")).to_contain_text("is on its way", timeout=TIMEOUT)

    link = follow(live, mail_to(outbox, EMAIL, "Reset your password"))
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    expect(page).to_have_url(live.url("/login"), timeout=TIMEOUT)
    expect(page.locator("main")).to_contain_text("Your password has been changed")
    assert mail_to(outbox, EMAIL, "Your password was changed")

    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.locator("main form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live.url("/profile"), timeout=TIMEOUT)

    page.goto(link)  # a link works once
    expect(page.locator("main")).to_contain_text("This link has expired, was already used")
    expect(page.get_by_role("link", name="Ask for a new reset link")).to_be_visible()


def test_verify_the_address_given_at_sign_up_then_sign_in_with_it(
    server: tuple[LiveServer, Path], page: Page
) -> None:
    live, outbox = server
    page.goto(live.url("/signup"))
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Name", exact=True).fill("Dana")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm password").fill(NEW_PASSWORD)
    page.locator("main form").get_by_role("button").click()
    expect(page).to_have_url(live.url("/profile"), timeout=TIMEOUT)

    page.goto(follow(live, mail_to(outbox, "dana@example.com", "Confirm your email address")))
    expect(page.locator("main")).to_contain_text("Confirm dana@example.com")
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(live.url("/account/profile"), timeout=TIMEOUT)
    expect(page.locator("main")).to_contain_text("dana@example.com is confirmed")

    page.context.clear_cookies()
    page.goto(live.url("/login"))
    page.get_by_label("Username or email").fill("Dana@Example.com")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.locator("main form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live.url("/profile"), timeout=TIMEOUT)
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Dana!")
