"""Passkeys in Debian's chromium with its virtual authenticator (Chrome DevTools Protocol), on a
real gunicorn reached as http://localhost:PORT (a secure context without TLS) with
WEBAPP_RP_ID=localhost: registration, sign-in by the button and by autofill (conditional
mediation), a removed passkey refused, a cloned authenticator with a stale counter refused."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect
from support.gunicorn import BIN, ROOT, Gunicorn, environment

pytestmark = [pytest.mark.live, pytest.mark.browser]

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
TIMEOUT = 10_000


class LocalhostGunicorn(Gunicorn):
    """gunicorn whose settings name the port it is given: WebAuthn's origin is BASE_URL."""

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.env["WEBAPP_BASE_URL"] = self.localhost_url
        return super()._spawn()

    @property
    def localhost_url(self) -> str:
        return f"http://localhost:{self.port}"


@dataclass
class Site:
    base_url: str

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("passkeys")
    env = environment(
        WEBAPP_INSTANCE_PATH=str(folder / "instance"),
        WEBAPP_SECURE_COOKIES="false",
        WEBAPP_RP_ID="localhost",
        WEBAPP_BASE_URL="http://localhost:8000",  # the real port replaces it at start
        WEBAPP_ARGON2_TIME_COST="1",
        WEBAPP_ARGON2_MEMORY_COST="8",
        WEBAPP_ARGON2_PARALLELISM="1",
        WEB_CONCURRENCY="2",
    )
    created = subprocess.run(
        [str(BIN / "flask"), "--app", "webapp", "users", "create", USERNAME, "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=30,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    with LocalhostGunicorn(folder, env, workers=2) as server:
        yield Site(server.localhost_url)


class Authenticator:
    """A virtual platform authenticator (passkeys, user verification) attached to one page."""

    def __init__(self, page: Page) -> None:
        self.cdp: CDPSession = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        added = self.cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": True,
                }
            },
        )
        self.id = added["authenticatorId"]

    def credentials(self) -> list[dict[str, Any]]:
        answer = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})
        return list(answer["credentials"])

    def add(self, credential: dict[str, Any]) -> None:
        wanted = {k: v for k, v in credential.items() if k != "name"}
        self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.id, "credential": wanted})


def sign_in_with_password(page: Page, site: Site) -> None:
    page.goto(site.url("/login"))
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("main form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(site.url("/profile"), timeout=TIMEOUT)


def sign_up(page: Page, site: Site, name: str) -> str:
    """A new user through /signup, signed in; their username."""
    page.goto(site.url("/signup"))
    username = f"user{uuid.uuid4().hex[:8]}"
    page.locator('input[name="username"]').fill(username)
    page.locator('input[name="name"]').fill(name)
    page.locator('input[name="email"]').fill(f"{username}@example.com")
    page.locator('input[name="password"]').fill(PASSWORD)
    page.locator('input[name="confirm"]').fill(PASSWORD)
    page.locator('input[name="confirm"]').press("Enter")
    expect(page).to_have_url(site.url("/profile"), timeout=TIMEOUT)
    return username


def register_passkey(page: Page, site: Site, name: str) -> None:
    page.goto(site.url("/account/security"))
    page.get_by_label("Name for a new passkey").fill(name)
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator(f'input[value="{name}"]')).to_be_visible(timeout=TIMEOUT)


def session_method(page: Page) -> str:
    return str(page.evaluate("async () => (await (await fetch('/session')).json()).method"))


@pytest.fixture
def enrolled(browser: Browser, site: Site) -> Iterator[dict[str, Any]]:
    """A passkey registered from the security page; its credential, private key included."""
    context = browser.new_context()
    page = context.new_page()
    authenticator = Authenticator(page)
    sign_in_with_password(page, site)
    name = f"Laptop {uuid.uuid4().hex[:8]}"
    register_passkey(page, site, name)
    (credential,) = authenticator.credentials()
    assert credential["isResidentCredential"]
    yield {**credential, "name": name}
    context.close()


def fresh_browser(
    browser: Browser, credential: dict[str, Any] | None
) -> tuple[BrowserContext, Page, Authenticator]:
    context = browser.new_context()
    page = context.new_page()
    authenticator = Authenticator(page)
    if credential is not None:
        authenticator.add(credential)
    return context, page, authenticator


def test_login_page_shows_a_passkey_button_at_load(page: Page, site: Site) -> None:
    page.goto(site.url("/login"))
    expect(page.get_by_role("button", name="passkey")).to_be_visible()


def test_register_then_sign_in_by_autofill(
    browser: Browser, site: Site, enrolled: dict[str, Any]
) -> None:
    context, page, _ = fresh_browser(browser, enrolled)
    page.goto(site.url("/login"))
    expect(page).to_have_url(site.url("/profile"), timeout=TIMEOUT)
    assert session_method(page) == "passkey"
    context.close()


#: Records, in order, the page's passkey requests and the autofill request's abort; the autofill
#: request waits as if nobody picked a passkey from the list (the virtual authenticator would
#: answer it at once). Init scripts are injected through CDP: the page's CSP does not apply.
RECORD_PASSKEY_REQUESTS = """
const log = (entry) => window.__reportPasskeyRequest(entry);
const realFetch = window.fetch.bind(window);
window.fetch = (url, options) => {
  log("fetch " + String(url).split("?")[0]);
  return realFetch(url, options);
};
const realGet = navigator.credentials.get.bind(navigator.credentials);
navigator.credentials.get = (options) => {
  if (options.mediation !== "conditional") { log("get"); return realGet(options); }
  log("autofill get");
  return new Promise((resolve, reject) => options.signal.addEventListener("abort", () => {
    log("autofill aborted");
    reject(new DOMException("aborted", "AbortError"));
  }));
};
"""


def test_sign_in_by_button_aborts_the_autofill_first(
    browser: Browser, site: Site, enrolled: dict[str, Any]
) -> None:
    context, page, _ = fresh_browser(browser, enrolled)
    log: list[str] = []
    context.expose_function("__reportPasskeyRequest", lambda entry: log.append(entry))
    context.add_init_script(RECORD_PASSKEY_REQUESTS)
    page.goto(site.url("/login?next=/account/sessions"))
    expect(page.get_by_role("button", name="passkey")).to_be_visible()
    for _ in range(250):  # exposed-function calls arrive while the test waits on the page
        if "autofill get" in log:
            break
        page.wait_for_timeout(20)
    # passkeys.js asks GET /csrf for the current token before each POST: not a passkey step.
    assert [e for e in log if e != "fetch /csrf"] == [
        "fetch /login/passkey/options",
        "autofill get",
    ]
    page.get_by_role("button", name="passkey").click()
    expect(page).to_have_url(site.url("/account/sessions"), timeout=TIMEOUT)
    assert session_method(page) == "passkey"
    steps = [entry for entry in log if entry != "fetch /csrf"]
    assert steps[2:6] == [
        "autofill aborted",  # before the button's own request
        "fetch /login/passkey/options",
        "get",
        "fetch /login/passkey",
    ]
    context.close()


def test_a_passkey_confirms_it_is_you_for_sensitive_actions(
    browser: Browser, site: Site, enrolled: dict[str, Any]
) -> None:
    context, page, authenticator = fresh_browser(browser, None)
    sign_in_with_password(page, site)
    authenticator.add(enrolled)
    page.goto(site.url("/account/reauthenticate?next=/account/security"))
    page.get_by_role("button", name="passkey").click()
    expect(page).to_have_url(site.url("/account/security"), timeout=TIMEOUT)
    assert session_method(page) == "password"
    context.close()


def test_a_removed_passkey_is_refused(
    browser: Browser, site: Site, enrolled: dict[str, Any]
) -> None:
    context, page, _ = fresh_browser(browser, None)
    sign_in_with_password(page, site)
    page.goto(site.url("/account/security"))
    row = page.locator(f'[data-passkey]:has(input[value="{enrolled["name"]}"])')
    row.get_by_role("button", name="Remove").click()
    expect(page.get_by_text(f"The passkey “{enrolled['name']}” was removed")).to_be_visible(
        timeout=TIMEOUT
    )
    expect(row).to_have_count(0)
    context.close()

    context, page, _ = fresh_browser(browser, enrolled)
    page.goto(site.url("/login"))
    expect(page.locator("[data-passkey-error]")).to_contain_text("not registered", timeout=TIMEOUT)
    assert page.url == site.url("/login")
    page.get_by_role("button", name="passkey").click()
    expect(page.locator("[data-passkey-error]")).to_contain_text("not registered", timeout=TIMEOUT)
    assert session_method(page) in ("None", "undefined")
    context.close()


def test_a_cloned_authenticator_with_a_stale_counter_is_refused(
    browser: Browser, site: Site, enrolled: dict[str, Any]
) -> None:
    original, page, authenticator = fresh_browser(browser, enrolled)
    page.goto(site.url("/login"))
    expect(page).to_have_url(site.url("/profile"), timeout=TIMEOUT)
    (used,) = authenticator.credentials()
    assert used["signCount"] > enrolled["signCount"]

    clone, page, _ = fresh_browser(browser, enrolled)  # copied before the original was used
    page.goto(site.url("/login"))
    expect(page.locator("[data-passkey-error]")).to_contain_text(
        "could not be verified", timeout=TIMEOUT
    )
    assert page.url == site.url("/login")
    original.close()
    clone.close()


def test_autofill_starts_after_a_boosted_navigation_to_the_sign_in_page(
    browser: Browser, site: Site, enrolled: dict[str, Any]
) -> None:
    context, page, _ = fresh_browser(browser, enrolled)
    page.goto(site.url("/"))
    page.locator("header").get_by_role("link", name="Sign in").click()  # hx-boost: no reload
    expect(page).to_have_url(site.url("/profile"), timeout=TIMEOUT)
    assert session_method(page) == "passkey"
    context.close()


def test_authenticator_app_set_up_and_sign_in_in_a_browser_under_the_csp(
    browser: Browser, site: Site
) -> None:
    """The QR code is an image (no inline script); codes computed from the secret shown."""
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    username = sign_up(page, site, "Tot P")
    page.goto(site.url("/account/security"))
    page.get_by_role("button", name="Set up an authenticator app").click()
    secret = page.locator("[data-totp-secret]").get_attribute("data-totp-secret", timeout=TIMEOUT)
    assert secret
    assert page.locator("img.qr-code").evaluate("img => img.naturalWidth") > 0
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code from the app").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("[data-recovery-code]")).to_have_count(10, timeout=TIMEOUT)
    page.goto(site.url("/logout"))
    page.locator("main").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(site.url("/login?reason=signed-out"), timeout=TIMEOUT)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("main form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(site.url("/login/verify"), timeout=TIMEOUT)
    page.get_by_label("Code from your authenticator app").fill(
        totp.at(time.time() + 30)  # the set-up's code is used up: the next step's
    )
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(site.url("/profile"), timeout=TIMEOUT)
    assert session_method(page) == "password+totp"
    assert problems == []
    context.close()


SHOTS = ROOT / "docs" / "screenshots"
#: Marks the end of the page's first passkey request (the autofill's, without a passkey).
RECORD_REQUEST_END = """
const realGet = navigator.credentials.get.bind(navigator.credentials);
navigator.credentials.get = (options) => {
  const request = realGet(options);
  request.catch(() => { window.__passkeyRequestEnded = true; });
  return request;
};
"""


@pytest.mark.parametrize(("device", "viewport"), [("desktop", (1280, 800)), ("phone", (390, 844))])
def test_sign_in_and_security_pages_on_desktop_and_phone(
    browser: Browser,
    site: Site,
    tmp_path: Path,
    device: str,
    viewport: tuple[int, int],
) -> None:
    """The passkey button and the passkey list show on both; screenshots into docs/ with
    WEBAPP_SCREENSHOTS=1 (for docs/mfa.md)."""
    folder = SHOTS if os.environ.get("WEBAPP_SCREENSHOTS") == "1" else tmp_path
    width, height = viewport
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(RECORD_REQUEST_END)
    page = context.new_page()
    Authenticator(page)  # no passkey in it: the sign-in page stays
    page.goto(site.url("/login"))
    expect(page.get_by_role("button", name="passkey")).to_be_visible()
    page.wait_for_function("() => window.__passkeyRequestEnded === true", timeout=TIMEOUT)
    expect(page.locator("[data-passkey-error]")).to_be_hidden()  # the autofill's end is silent
    page.screenshot(path=folder / f"mfa-login-{device}.png", full_page=True)
    sign_up(page, site, "Ada Lovelace")
    register_passkey(page, site, "My laptop")
    page.goto(site.url("/account/security"))
    page.screenshot(path=folder / f"mfa-security-{device}.png", full_page=True)
    context.close()
