"""Signing in through a real OpenID provider in Debian's chromium against a real gunicorn, and
the provider's back-channel logout ending the session in another open tab, whose widget then
says the session was ended."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import BrowserContext, expect
from support.gunicorn import Gunicorn, environment
from support.oidc_provider import OidcProvider, oidc_provider
from test_browser_live_session import REASON, REVOKED
from test_browser_widget import QUICK_TIMEOUT, STATUS, WIDGET

pytestmark = [pytest.mark.live, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]

#: The widget polls every second here: a session ended elsewhere shows within a few.
POLL_TIMEOUT = 5_000


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with oidc_provider() as server:
        yield server


@pytest.fixture(scope="module")
def server(provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("gunicorn-oidc")
    settings = {f"WEBAPP_{name}": value for name, value in provider.settings("test").items()}
    env = environment(
        WEBAPP_INSTANCE_PATH=str(folder / "instance"),
        WEBAPP_SECURE_COOKIES="false",
        WEBAPP_POLL_SECONDS="1",
        WEBAPP_OIDC_PROVIDERS="test",
        **settings,
    )
    with Gunicorn(folder, env, workers=1) as gunicorn:
        yield gunicorn.base_url


def test_sign_in_with_a_provider_and_its_back_channel_logout_in_chromium(
    server: str, provider: OidcProvider, context: BrowserContext, tmp_path: Path
) -> None:
    page = context.new_page()
    page.goto(f"{server}/login")
    # The README's picture of the provider buttons, refreshed with WEBAPP_SCREENSHOTS=1.
    refresh = os.environ.get("WEBAPP_SCREENSHOTS") == "1"
    folder = ROOT / "docs" / "screenshots" if refresh else tmp_path
    page.locator("main").screenshot(path=folder / "login-providers.png", animations="disabled")
    page.get_by_role("link", name="Test ID").click()
    page.fill('input[name="login"]', "zoe")
    page.fill('input[name="password"]', "any")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{server}/profile", timeout=QUICK_TIMEOUT)
    widget = page.locator(WIDGET)
    expect(widget).to_have_attribute(STATUS, "authenticated", timeout=QUICK_TIMEOUT)
    expect(widget).to_contain_text("User zoe", timeout=QUICK_TIMEOUT)
    page.goto(f"{server}/")  # a public page stays put when its session ends, and says why
    expect(widget).to_have_attribute(STATUS, "authenticated", timeout=QUICK_TIMEOUT)

    other_tab = context.new_page()  # the person signs out at the provider in another tab
    other_tab.goto(f"{provider.issuer}/session/end")
    other_tab.get_by_role("button", name="Yes, sign me out").click()
    (token,) = provider.logout_tokens()
    answer = requests.post(
        f"{server}/login/test/backchannel-logout", data={"logout_token": token}, timeout=10
    )
    assert answer.status_code == 200

    expect(widget).to_have_attribute(STATUS, "unauthenticated", timeout=POLL_TIMEOUT)
    expect(page.locator(REASON)).to_have_text(REVOKED, timeout=QUICK_TIMEOUT)
