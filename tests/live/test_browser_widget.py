"""The session widget in Debian's chromium against a real gunicorn: its three states, other tabs
following a sign-in and sign-out without reloading, the page without JavaScript, and no console
errors or CSP violations (the app sends a strict CSP: no inline scripts or styles).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Route, WebError, expect
from playwright.sync_api import Error as PlaywrightError

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.browser]

WIDGET = "#session-widget"
STATUS = "data-session-status"
SIGNED_OUT_TEXT = "Please log in to see your profile."
#: Where this tab's own sign-out leads: the sign-in page, saying "You are signed out".
SIGNED_OUT_PAGE = "/login?reason=signed-out"
#: Long enough for several polls (WEBAPP_POLL_SECONDS=1), short enough to fail fast.
POLL_TIMEOUT = 5_000
#: For what is on the page already or one request away.
QUICK_TIMEOUT = 2_000
#: The token scripts POST with (SPEC: every page carries it).
META_TOKEN = "document.querySelector('meta[name=\"csrf-token\"]').content"
#: A script's POST with the page's token; its status after redirects (a bad token: 400).
POST_WITH_META_TOKEN = f"""async (path) => {{
    const headers = {{"X-CSRFToken": {META_TOKEN}}};
    return (await fetch(path, {{method: "POST", headers: headers}})).status;
}}"""

#: Reports every CSP violation to the test, including across navigations, and counts the
#: reports Python has received. Init scripts are injected through the browser's debugging
#: protocol, so the page's CSP does not apply to them.
REPORT_CSP_VIOLATIONS = """
window.__cspViolationsReported = 0;
document.addEventListener("securitypolicyviolation", function (event) {
  window.__reportCspViolation(
    event.violatedDirective + " blocked " + (event.blockedURI || "inline") + " on " +
    event.documentURI
  ).then(function () { window.__cspViolationsReported += 1; });
});
"""


class BrowserErrors:
    """Console errors, uncaught exceptions and CSP violations of every page of the contexts
    it watches."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.seen: list[str] = []

    def watch(self, context: BrowserContext) -> BrowserContext:
        context.on("console", self._on_console)
        context.on("weberror", self._on_error)
        context.expose_function("__reportCspViolation", self._on_csp_violation)
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        return context

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        self.seen.append(f"console error: {message.text} at {message.location}")

    def _on_error(self, error: WebError) -> None:
        self.seen.append(f"uncaught: {error.error}")

    def _on_csp_violation(self, description: str) -> None:
        self.seen.append(f"CSP violation: {description}")


@pytest.fixture
def errors(live_server: LiveServer, context: BrowserContext) -> BrowserErrors:
    """Watches pytest-playwright's `context`; tests watch any other context they open."""
    collected = BrowserErrors(live_server)
    collected.watch(context)
    return collected


@pytest.fixture
def shot(tmp_path: Path) -> Callable[[Page, str], None]:
    """Screenshots of the header (the widget in place), into the test's own folder: that the
    widget in each state can be pictured (the README's pictures: test_browser_look.py)."""

    def take(page: Page, name: str) -> None:
        path = tmp_path / f"widget-{name}.png"
        page.locator("header").screenshot(path=path, animations="disabled")
        assert path.stat().st_size > 0

    return take


def wait_until(page: Page, condition: Callable[[], bool], message: str) -> None:
    """For a condition on the test's side: Playwright delivers events (a route to handle,
    say) only while the test waits on it, so wait in short steps through the page."""
    deadline = time.monotonic() + QUICK_TIMEOUT / 1000
    while not condition():
        assert time.monotonic() < deadline, message
        page.wait_for_timeout(20)


def sign_in(page: Page, server: LiveServer) -> None:
    """Through the form, as a person would."""
    page.goto(server.url("/login"))
    page.get_by_label("Username").fill(server.username)
    page.get_by_label("Password").fill(server.password)
    page.locator("main form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(server.url("/profile"), timeout=QUICK_TIMEOUT)
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Welcome, {server.name}!", timeout=QUICK_TIMEOUT
    )


def test_widget_shows_loading_until_session_answers(
    live_server: LiveServer,
    page: Page,
    errors: BrowserErrors,
    shot: Callable[[Page, str], None],
) -> None:
    """The first render is `loading`; the first /session answer turns it `unauthenticated`.

    The first /session request is held back, so the loading state is observed, not assumed.
    """
    held: list[Route] = []

    def hold_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/session", hold_first)
    with page.expect_request("**/session", timeout=QUICK_TIMEOUT):
        page.goto(live_server.url("/"))

    widget = page.locator(WIDGET)
    expect(widget).to_have_attribute(STATUS, "loading", timeout=QUICK_TIMEOUT)
    expect(widget).to_have_attribute("aria-busy", "true", timeout=QUICK_TIMEOUT)
    expect(widget).to_contain_text("Loading…", timeout=QUICK_TIMEOUT)
    wait_until(page, lambda: len(held) == 1, "the first /session request was not held")
    shot(page, "loading")

    held[0].continue_()
    expect(widget).to_have_attribute(STATUS, "unauthenticated", timeout=QUICK_TIMEOUT)
    expect(widget).to_contain_text(SIGNED_OUT_TEXT, timeout=QUICK_TIMEOUT)
    expect(widget).not_to_have_attribute("aria-busy", "true", timeout=QUICK_TIMEOUT)
    expect(widget.get_by_role("link", name="Sign in")).to_have_attribute(
        "href", "/login", timeout=QUICK_TIMEOUT
    )
    shot(page, "unauthenticated")
    assert errors.seen == []


def test_other_tab_follows_sign_in_and_sign_out_without_reload(
    live_server: LiveServer,
    context: BrowserContext,
    errors: BrowserErrors,
    shot: Callable[[Page, str], None],
) -> None:
    """Tab A never reloads (its JS marker survives) yet its widget follows what tab B does."""
    tab_a = context.new_page()
    tab_a.goto(live_server.url("/"))
    widget_a = tab_a.locator(WIDGET)
    expect(widget_a).to_have_attribute(STATUS, "unauthenticated", timeout=QUICK_TIMEOUT)
    tab_a.evaluate("window.__marker = 1")

    tab_b = context.new_page()
    sign_in(tab_b, live_server)
    widget_b = tab_b.locator(WIDGET)
    # A protected page knows the session: it renders the signed-in widget at once.
    expect(widget_b).to_have_attribute(STATUS, "authenticated", timeout=QUICK_TIMEOUT)
    expect(widget_b).to_contain_text(f"Welcome, {live_server.name}!", timeout=QUICK_TIMEOUT)

    expect(widget_a).to_have_attribute(STATUS, "authenticated", timeout=POLL_TIMEOUT)
    expect(widget_a).to_contain_text(f"Welcome, {live_server.name}!", timeout=QUICK_TIMEOUT)
    expect(widget_a.get_by_role("button", name="Sign out")).to_be_visible(timeout=QUICK_TIMEOUT)
    assert tab_a.evaluate("window.__marker") == 1, "tab A reloaded"
    shot(tab_a, "authenticated")

    widget_b.get_by_role("button", name="Sign out").click()
    expect(tab_b).to_have_url(live_server.url(SIGNED_OUT_PAGE), timeout=QUICK_TIMEOUT)
    expect(widget_b).to_contain_text(SIGNED_OUT_TEXT, timeout=QUICK_TIMEOUT)

    expect(widget_a).to_have_attribute(STATUS, "unauthenticated", timeout=POLL_TIMEOUT)
    expect(widget_a).to_contain_text(SIGNED_OUT_TEXT, timeout=QUICK_TIMEOUT)
    assert tab_a.evaluate("window.__marker") == 1, "tab A reloaded"
    assert errors.seen == []


def test_sign_out_wins_over_a_poll_already_on_its_way(
    live_server: LiveServer, page: Page, errors: BrowserErrors
) -> None:
    """On a protected page, a poll sent just before "Sign out" and answered after it must not
    turn the sign-out into /login?next=<that page>: the sign-out's own answer stands."""
    sign_in(page, live_server)
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/session", hold)
    page.evaluate("htmx.trigger('#session-widget', 'session:refresh')")
    wait_until(page, lambda: len(held) == 1, "no poll was sent")

    page.locator(WIDGET).get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(live_server.url(SIGNED_OUT_PAGE), timeout=QUICK_TIMEOUT)
    # The boosted form replaced the page, not just the widget it sits in.
    expect(page.locator("header")).to_have_count(1)
    expect(page.locator("main")).to_have_count(1)
    page.unroute("**/session")
    for route in held:  # now answered by the server, which ended the session
        with contextlib.suppress(PlaywrightError):  # aborted by the page: nothing to answer
            route.continue_()
    page.wait_for_timeout(3 * live_server.poll_seconds * 1000)
    expect(page).to_have_url(live_server.url(SIGNED_OUT_PAGE))
    expect(page.locator(WIDGET)).to_contain_text(SIGNED_OUT_TEXT)
    assert errors.seen == []


def wait_for_new_meta_token(page: Page, old: str, timeout: int) -> None:
    page.wait_for_function(f"(old) => {META_TOKEN} !== old", arg=old, timeout=timeout)


def test_meta_csrf_token_follows_a_boosted_sign_in_and_sign_out(
    live_server: LiveServer, page: Page, errors: BrowserErrors
) -> None:
    """hx-boost swaps the body only, not the <head> with its token, and a sign-in and a
    sign-out each issue a new token: a script POSTing after either must not get a 400."""
    page.goto(live_server.url("/login"))
    expect(page.locator(WIDGET)).to_have_attribute(STATUS, "unauthenticated", timeout=QUICK_TIMEOUT)
    page.evaluate("window.__marker = 1")
    anonymous = page.evaluate(META_TOKEN)
    page.get_by_label("Username").fill(live_server.username)
    page.get_by_label("Password").fill(live_server.password)
    page.locator("main form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live_server.url("/profile"), timeout=QUICK_TIMEOUT)
    assert page.evaluate("window.__marker") == 1, "the sign-in reloaded the page"
    assert page.evaluate(META_TOKEN) != anonymous
    assert page.evaluate(POST_WITH_META_TOKEN, "/session/keepalive") == 200

    signed_in = page.evaluate(META_TOKEN)
    page.locator(WIDGET).get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(live_server.url(SIGNED_OUT_PAGE), timeout=QUICK_TIMEOUT)
    assert page.evaluate("window.__marker") == 1, "the sign-out reloaded the page"
    assert page.evaluate(META_TOKEN) != signed_in
    assert page.evaluate(POST_WITH_META_TOKEN, "/logout") == 200
    assert errors.seen == []


def test_meta_csrf_token_follows_a_session_changed_in_another_tab(
    live_server: LiveServer, context: BrowserContext, errors: BrowserErrors
) -> None:
    """Tab A never reloads while tab B signs in and out: each time, the token in A's <meta>
    belonged to a session that no longer exists, so A must take the new one."""
    tab_a = context.new_page()
    tab_a.goto(live_server.url("/"))
    widget_a = tab_a.locator(WIDGET)
    expect(widget_a).to_have_attribute(STATUS, "unauthenticated", timeout=QUICK_TIMEOUT)
    tab_a.evaluate("window.__marker = 1")
    anonymous = tab_a.evaluate(META_TOKEN)

    tab_b = context.new_page()
    sign_in(tab_b, live_server)
    expect(widget_a).to_have_attribute(STATUS, "authenticated", timeout=POLL_TIMEOUT)
    wait_for_new_meta_token(tab_a, anonymous, QUICK_TIMEOUT)
    assert tab_a.evaluate(POST_WITH_META_TOKEN, "/session/keepalive") == 200

    signed_in = tab_a.evaluate(META_TOKEN)
    tab_b.locator(WIDGET).get_by_role("button", name="Sign out").click()
    expect(tab_b).to_have_url(live_server.url(SIGNED_OUT_PAGE), timeout=QUICK_TIMEOUT)
    expect(widget_a).to_have_attribute(STATUS, "unauthenticated", timeout=POLL_TIMEOUT)
    wait_for_new_meta_token(tab_a, signed_in, QUICK_TIMEOUT)
    assert tab_a.evaluate(POST_WITH_META_TOKEN, "/logout") == 200
    assert tab_a.evaluate("window.__marker") == 1, "tab A reloaded"
    assert errors.seen == []


def test_widget_and_forms_work_without_javascript(
    live_server: LiveServer, new_context: Callable[..., BrowserContext], errors: BrowserErrors
) -> None:
    """Without JavaScript the widget still shows the server-known state, and every form
    (sign-in, sign-out) still submits."""
    context = errors.watch(new_context(java_script_enabled=False))
    page = context.new_page()
    sign_in(page, live_server)
    expect(page.locator(WIDGET)).to_have_attribute(STATUS, "authenticated", timeout=QUICK_TIMEOUT)
    expect(page.locator(WIDGET).get_by_text(f"Welcome, {live_server.name}!")).to_be_visible(
        timeout=QUICK_TIMEOUT
    )

    page.goto(live_server.url("/"))
    widget = page.locator(WIDGET)
    # Nothing will fetch /session: the <noscript> copy of the known state is what shows.
    # Playwright's text and role locators skip <noscript>, hence the CSS selectors.
    expect(widget).to_have_attribute(STATUS, "loading", timeout=QUICK_TIMEOUT)
    known = widget.locator("noscript .greeting")
    expect(known).to_have_text(f"Welcome, {live_server.name}!", timeout=QUICK_TIMEOUT)
    expect(known).to_be_visible(timeout=QUICK_TIMEOUT)
    sign_out = widget.locator("noscript form[action='/logout'] button[type=submit]")
    expect(sign_out).to_have_text("Sign out", timeout=QUICK_TIMEOUT)
    sign_out.click()
    expect(page).to_have_url(live_server.url(SIGNED_OUT_PAGE), timeout=QUICK_TIMEOUT)
    expect(page.locator(WIDGET).locator("noscript .greeting")).to_have_text(
        SIGNED_OUT_TEXT, timeout=QUICK_TIMEOUT
    )
    expect(page.locator(WIDGET).locator("noscript .greeting")).to_be_visible(timeout=QUICK_TIMEOUT)
    assert context.request.get(live_server.url("/session")).json() == {}
    assert errors.seen == []


def test_error_watch_sees_csp_violations(
    live_server: LiveServer, page: Page, errors: BrowserErrors
) -> None:
    """The other tests' "no errors" would prove nothing if the watch were blind: an inline
    script, which the CSP forbids, must be reported."""
    page.goto(live_server.url("/"))
    expect(page.locator(WIDGET)).to_have_attribute(STATUS, "unauthenticated", timeout=QUICK_TIMEOUT)
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__ran = true";
            document.body.append(script);
        }"""
    )
    page.wait_for_function("window.__cspViolationsReported > 0", timeout=QUICK_TIMEOUT)
    assert page.evaluate("window.__ran") is None, "the CSP let an inline script run"
    assert any("CSP violation: script-src" in seen for seen in errors.seen), errors.seen
