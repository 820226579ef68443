"""The basket and the theme in Debian's chromium against a real gunicorn: another tab's header
count follows the basket without a reload, sign-in keeps the basket and sign-out empties it, and
the theme is in the server's HTML (no flash: it applies with every script blocked)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect
from test_browser_widget import QUICK_TIMEOUT, STATUS, WIDGET, BrowserErrors, sign_in

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.browser]

#: Several polls (WEBAPP_POLL_SECONDS=1); the other tab is usually nudged at once.
POLL_TIMEOUT = 5_000
#: What the stylesheet's theme block makes of <html data-theme> (its `color-scheme`).
DARK = "dark"
LIGHT = "light"
#: Where sign-out lands: the sign-in page, saying why.
SIGNED_OUT_PAGE = "/login?reason=signed-out"


def add_to_basket(page: Page, server: LiveServer, sku: str, quantity: int = 1) -> None:
    page.goto(server.url("/basket"))
    row = page.locator(f"table.catalogue tr[data-sku='{sku}']")
    row.get_by_label("Quantity").fill(str(quantity))
    row.get_by_role("button", name="Add").click()
    expect(page.locator(f"table.basket tr[data-sku='{sku}']")).to_be_visible(timeout=QUICK_TIMEOUT)


def header_count(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#basket-count")


def test_basket_count_follows_in_other_tab_and_across_sign_in_and_out(
    live_server: LiveServer, context: BrowserContext
) -> None:
    errors = BrowserErrors(live_server)
    errors.watch(context)
    tab_a = context.new_page()
    tab_a.goto(live_server.url("/"))
    expect(tab_a.locator(WIDGET)).to_have_attribute(STATUS, "unauthenticated")
    expect(header_count(tab_a)).to_have_text("0")
    tab_a.evaluate("window.__marker = 1")

    tab_b = context.new_page()
    add_to_basket(tab_b, live_server, "tea", 2)
    expect(header_count(tab_b)).to_have_text("2", timeout=QUICK_TIMEOUT)
    expect(header_count(tab_a)).to_have_text("2", timeout=POLL_TIMEOUT)
    add_to_basket(tab_b, live_server, "mug")
    expect(header_count(tab_a)).to_have_text("3", timeout=POLL_TIMEOUT)

    sign_in(tab_b, live_server)  # the basket comes along (on a new session id)
    expect(header_count(tab_b)).to_have_text("3", timeout=QUICK_TIMEOUT)
    tab_b.goto(live_server.url("/basket"))
    expect(tab_b.locator("table.basket tr")).to_have_count(3)  # the header row and two lines
    expect(tab_a.locator(WIDGET)).to_have_attribute(STATUS, "authenticated", timeout=POLL_TIMEOUT)
    expect(header_count(tab_a)).to_have_text("3")

    tab_b.locator(WIDGET).get_by_role("button", name="Sign out").click()
    expect(tab_b).to_have_url(live_server.url(SIGNED_OUT_PAGE), timeout=QUICK_TIMEOUT)
    expect(header_count(tab_b)).to_have_text("0", timeout=QUICK_TIMEOUT)
    expect(header_count(tab_a)).to_have_text("0", timeout=POLL_TIMEOUT)
    tab_b.goto(live_server.url("/basket"))
    expect(tab_b.get_by_text("Your basket is empty.")).to_be_visible()
    assert tab_a.evaluate("window.__marker") == 1, "tab A reloaded"
    assert errors.seen == []


def scheme(page: Page) -> str:
    """The colour scheme the page is drawn in, as the stylesheet set it."""
    return str(page.evaluate("getComputedStyle(document.documentElement).colorScheme"))


def block_scripts(route: Route) -> None:
    route.abort()


def test_theme_is_in_the_server_html_and_survives_sign_in_and_out(
    live_server: LiveServer, browser: Browser
) -> None:
    context = browser.new_context(color_scheme="light")
    errors = BrowserErrors(live_server)
    errors.watch(context)
    page = context.new_page()
    page.goto(live_server.url("/"))
    expect(page.locator("html")).to_have_attribute("data-theme", "system")
    assert scheme(page) == LIGHT
    page.get_by_label("Theme").select_option("dark")
    page.locator("form.theme-switch").get_by_role("button", name="Apply").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark", timeout=QUICK_TIMEOUT)
    expect(page).to_have_url(live_server.url("/"))

    # No flash: the first paint is already dark, with no script at all.
    bare = context.new_page()
    bare.route("**/*.js", block_scripts)
    bare.goto(live_server.url("/login"))
    assert scheme(bare) == DARK
    html = context.request.get(live_server.url("/basket")).text()
    assert '<html lang="en" data-theme="dark">' in html

    sign_in(page, live_server)
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert scheme(page) == DARK
    page.locator(WIDGET).get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(live_server.url(SIGNED_OUT_PAGE), timeout=QUICK_TIMEOUT)
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert errors.seen == []
    context.close()


def test_system_theme_follows_the_browser(live_server: LiveServer, browser: Browser) -> None:
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    page.goto(live_server.url("/"))
    expect(page.locator("html")).to_have_attribute("data-theme", "system")
    assert scheme(page) == DARK
    context.close()
