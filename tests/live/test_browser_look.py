"""What people see (issue 14), in Debian's chromium against a real gunicorn, at phone, tablet
and desktop widths: no page scrolls sideways in any widget state (loading, signed out, signed
in, the expiry warning, ended with a reason), axe-core finds no serious or critical WCAG
violation, the sign-in page says why the user is there, the nav follows the widget without a
reload, times read as relative, and focus stays sensible after htmx swaps.

axe-core (tests/support/axe/) is injected into browser contexts of this module's own, opened
with `bypass_csp=True`: the app's strict CSP would refuse the script otherwise. With
WEBAPP_SCREENSHOTS=1 (`make screenshots`) the tests also write the README's desktop and phone
pictures into docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect
from test_browser_basket_theme import add_to_basket
from test_browser_widget import QUICK_TIMEOUT, SIGNED_OUT_TEXT, STATUS, WIDGET, sign_in

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "support" / "axe" / "axe.min.js"
#: Phone (small and common), tablet, desktop.
WIDTHS = (320, 390, 768, 1280)
#: Below this width (app.css: 48rem) the signed-in widget is an avatar menu.
NARROW = 768
#: axe's impacts that fail a test.
BLOCKING = ("serious", "critical")
RUN_AXE = """async (blocking) => {
    const result = await axe.run(document, {resultTypes: ["violations"]});
    return result.violations
        .filter((v) => blocking.includes(v.impact))
        .map((v) => `${v.id} (${v.impact}): ${v.help} at ` +
                    v.nodes.map((n) => n.target.join(" ")).join(", "));
}"""
#: The expiry warning shows 120 s before the end: 3 s after the last activity here.
warning_soon = pytest.mark.parametrize(
    "live_server",
    [(("idle_timeout", 123), ("poll_seconds", 1))],
    indirect=True,
    ids=["idle_timeout=123"],
)


class Look:
    """Checks one page in one state: no sideways scrolling, no blocking axe violation."""

    def __init__(self, page: Page, width: int) -> None:
        self.page = page
        self.width = width
        self.checked: list[str] = []

    def check(self, label: str) -> None:
        page = self.page
        sizes = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert sizes[0] <= sizes[1], f"{label} at {self.width} px scrolls sideways: {sizes}"
        violations = page.evaluate(RUN_AXE, list(BLOCKING))
        assert violations == [], f"{label} at {self.width} px:\n" + "\n".join(violations)
        self.checked.append(label)

    def open_menu_if_narrow(self, label: str, shot: Callable[[], None]) -> None:
        """On a phone the signed-in widget is a menu: check it open too, then close it."""
        if self.width >= NARROW:
            expect(self.page.locator(WIDGET).locator("summary")).to_be_hidden()
            return
        toggle = self.page.locator(WIDGET).locator("summary")
        toggle.click()
        expect(self.page.locator(WIDGET).get_by_role("button", name="Sign out")).to_be_visible()
        self.check(label + " (menu open)")
        shot()
        toggle.click()


@pytest.fixture
def shots() -> Callable[[Page, str, int], None]:
    """Whole-page pictures for the README, only with WEBAPP_SCREENSHOTS=1."""
    folder = ROOT / "docs" / "screenshots"

    def take(page: Page, name: str, width: int) -> None:
        if os.environ.get("WEBAPP_SCREENSHOTS") != "1" or width not in (390, 1280):
            return
        folder.mkdir(parents=True, exist_ok=True)
        page.mouse.move(0, page.viewport_size["height"] - 1 if page.viewport_size else 0)
        kind = "phone" if width < NARROW else "desktop"
        path = folder / f"{kind}-{name}.png"
        page.screenshot(path=path, full_page=True, animations="disabled", caret="initial")
        assert path.stat().st_size > 0

    return take


@pytest.fixture
def look_context(new_context: Callable[..., BrowserContext]) -> Callable[[int], BrowserContext]:
    """Contexts of a given width, with axe-core injected into every page."""

    def make(width: int) -> BrowserContext:
        context = new_context(
            bypass_csp=True, viewport={"width": width, "height": 800}, locale="en-GB"
        )
        context.add_init_script(path=AXE)
        return context

    return make


def wait_settled(page: Page, status: str) -> None:
    expect(page.locator(WIDGET)).to_have_attribute(STATUS, status, timeout=QUICK_TIMEOUT)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_and_state_fits_and_passes_axe(
    live_server: LiveServer,
    look_context: Callable[[int], BrowserContext],
    shots: Callable[[Page, str, int], None],
    width: int,
) -> None:
    context = look_context(width)
    page = context.new_page()
    look = Look(page, width)

    # loading: the first /session answer is held back.
    held: list[Route] = []
    page.route("**/session", lambda route: route.continue_() if held else held.append(route))
    with page.expect_request("**/session", timeout=QUICK_TIMEOUT):
        page.goto(live_server.url("/"))
    wait_settled(page, "loading")
    look.check("home, loading")
    held[0].continue_()
    wait_settled(page, "unauthenticated")
    look.check("home, signed out")
    for path in ("/login", "/signup", "/login?reason=expired", "/nowhere"):
        page.goto(live_server.url(path))
        wait_settled(page, "unauthenticated")
        look.check(f"{path}, signed out")
    expect(page.get_by_role("heading", level=1)).to_have_text("404")

    # A second browser signed in too, so that the sessions page has another row.
    other = look_context(width).new_page()
    sign_in(other, live_server)
    sign_in(page, live_server)
    wait_settled(page, "authenticated")
    look.check("/profile, signed in")
    look.open_menu_if_narrow("/profile, signed in", lambda: shots(page, "menu", width))
    if width >= NARROW:  # on a phone the README shows the open menu instead
        shots(page, "profile", width)
    for path in (
        "/",
        "/account/profile",
        "/account/sessions",
        "/account/password",
        "/account/reauthenticate",
        "/logout",
    ):
        page.goto(live_server.url(path))
        expect(page.locator(WIDGET)).not_to_have_attribute(STATUS, "loading")
        wait_settled(page, "authenticated")
        look.check(f"{path}, signed in")
        if path == "/account/sessions":
            shots(page, "sessions", width)

    # Ended with a reason: signed out in another tab of this browser, while "/" is open.
    page.goto(live_server.url("/"))
    wait_settled(page, "authenticated")
    tab = context.new_page()
    tab.goto(live_server.url("/logout"))
    tab.locator("main form").get_by_role("button", name="Sign out").click()
    wait_settled(page, "unauthenticated")
    expect(page.locator(WIDGET).locator(".session-reason")).to_have_text(
        "You signed out in another tab.", timeout=QUICK_TIMEOUT
    )
    look.check("home, ended with a reason")
    page.goto(live_server.url("/login?reason=signed-out"))
    expect(page.locator("main .notice")).to_have_text("You are signed out.")
    context.close()


@warning_soon
@pytest.mark.parametrize("width", (320, 390, 1280))
def test_expiry_warning_is_a_full_width_bar_with_a_countdown(
    live_server: LiveServer,
    look_context: Callable[[int], BrowserContext],
    shots: Callable[[Page, str, int], None],
    width: int,
) -> None:
    """The warning sits under the header across the whole width, counts down, and keeps
    "Stay signed in" on screen, on a phone as on a desktop."""
    page = look_context(width).new_page()
    look = Look(page, width)
    sign_in(page, live_server)
    warning = page.locator(WIDGET).locator(".session-warning")
    expect(warning).to_be_visible(timeout=7_000)
    countdown = warning.locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^in [12]:\d\d$"))
    first = countdown.text_content()
    expect(countdown).not_to_have_text(first or "", timeout=QUICK_TIMEOUT)  # it is live
    box = warning.bounding_box()
    assert box is not None and box["x"] <= 0 and box["width"] >= width - 1, box
    expect(warning.get_by_role("button", name="Stay signed in")).to_be_in_viewport()
    look.check("/profile, expiry warning")
    shots(page, "warning", width)
    for path in ("/", "/account/sessions"):
        page.goto(live_server.url(path))
        expect(warning).to_be_visible(timeout=QUICK_TIMEOUT)
        look.check(f"{path}, expiry warning")
    # "Stay signed in" swaps the widget: focus does not fall back to the page's start.
    warning.get_by_role("button", name="Stay signed in").click()
    expect(warning).to_have_count(0, timeout=QUICK_TIMEOUT)
    page.wait_for_function(
        "document.getElementById('session-widget').contains(document.activeElement)",
        timeout=QUICK_TIMEOUT,
    )


def test_nav_follows_the_widget_without_a_reload(
    live_server: LiveServer, look_context: Callable[[int], BrowserContext]
) -> None:
    """The signed-in links appear when another tab signs in and go when it signs out; the
    page is never reloaded; the current page is marked in a labelled nav."""
    context = look_context(1280)
    page = context.new_page()
    page.goto(live_server.url("/"))
    wait_settled(page, "unauthenticated")
    nav = page.get_by_role("navigation", name="Main")
    sessions_link = nav.get_by_role("link", name="Sessions")
    expect(sessions_link).to_be_hidden()
    expect(nav.get_by_role("link", name="Home")).to_have_attribute("aria-current", "page")
    page.evaluate("window.__marker = 1")

    other = context.new_page()
    sign_in(other, live_server)
    wait_settled(page, "authenticated")
    expect(sessions_link).to_be_visible()

    other.goto(live_server.url("/logout"))
    other.locator("main form").get_by_role("button", name="Sign out").click()
    wait_settled(page, "unauthenticated")
    expect(sessions_link).to_be_hidden()
    expect(page.locator(WIDGET)).to_contain_text(SIGNED_OUT_TEXT)
    assert page.evaluate("window.__marker") == 1, "the page reloaded"


def test_protected_page_sends_to_sign_in_with_the_reason(
    live_server: LiveServer, look_context: Callable[[int], BrowserContext]
) -> None:
    """A session ended from another device while /account/sessions is open: the page goes to
    the sign-in form, which says so, and comes back after signing in."""
    device = look_context(390).new_page()
    sign_in(device, live_server)
    device.goto(live_server.url("/account/sessions"))
    wait_settled(device, "authenticated")

    manager = look_context(1280).new_page()
    sign_in(manager, live_server)
    manager.goto(live_server.url("/account/sessions"))
    manager.get_by_role("button", name="Sign out all other sessions").click()
    expect(manager.locator("main .flash")).to_contain_text("Signed out of")

    expect(device).to_have_url(
        live_server.url("/login?next=%2Faccount%2Fsessions&reason=revoked"), timeout=5_000
    )
    expect(device.locator("main .notice")).to_have_text(
        "Your session was ended from another device. Sign in again to continue."
    )
    # The widget's own invitation is not repeated on the sign-in page.
    expect(device.locator(WIDGET).get_by_text(SIGNED_OUT_TEXT)).to_be_hidden()


def test_times_are_relative_with_the_exact_time_on_focus(
    live_server: LiveServer, look_context: Callable[[int], BrowserContext]
) -> None:
    page = look_context(1280).new_page()
    sign_in(page, live_server)
    page.goto(live_server.url("/account/sessions"))
    this_device = page.locator("ul.devices > li.this-device")
    expect(this_device).to_contain_text("Active now")
    signed_in = this_device.locator("time").first
    expect(signed_in).to_have_text(re.compile(r"^(just now|\d+ minutes? ago)$"))
    signed_in.focus()
    exact = signed_in.get_attribute("data-exact")
    assert exact and re.search(r"\d{1,2}:\d\d", exact), exact
    assert signed_in.get_attribute("title") == exact
    page.goto(live_server.url("/profile"))
    expect(page.locator("main dd time").last).to_have_text(re.compile(r"^in \d+ minutes$"))


def test_times_without_javascript_are_labelled_utc(
    live_server: LiveServer, new_context: Callable[..., BrowserContext]
) -> None:
    page = new_context(java_script_enabled=False).new_page()
    sign_in(page, live_server)
    ends = page.locator("main dd time").last
    expect(ends).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))


def test_boosted_navigation_moves_focus_to_the_new_page(
    live_server: LiveServer, look_context: Callable[[int], BrowserContext]
) -> None:
    """hx-boost swaps the page without a reload: focus starts at the new <main>, or at the
    field that asks for it, never left on a link that is gone."""
    page = look_context(1280).new_page()
    page.goto(live_server.url("/"))
    wait_settled(page, "unauthenticated")
    page.locator("main").get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(live_server.url("/login"))
    expect(page.get_by_label("Username")).to_be_focused()
    page.get_by_role("link", name="Create one").click()
    expect(page).to_have_url(live_server.url("/signup"))
    expect(page.get_by_label("Username")).to_be_focused()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Home").click()
    expect(page).to_have_url(live_server.url("/"))
    expect(page.locator("main")).to_be_focused()
    # The skip link leads to the content.
    page.goto(live_server.url("/"))
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()


def test_axe_check_is_not_blind(
    live_server: LiveServer, look_context: Callable[[int], BrowserContext]
) -> None:
    """The "no violations" above would prove nothing if axe did not run: a button without a
    name (a critical violation) must be reported."""
    page = look_context(1280).new_page()
    page.goto(live_server.url("/"))
    wait_settled(page, "unauthenticated")
    page.evaluate("document.querySelector('main').append(document.createElement('button'))")
    violations = page.evaluate(RUN_AXE, list(BLOCKING))
    assert any(v.startswith("button-name (critical)") for v in violations), violations


@pytest.mark.parametrize("width", WIDTHS)
def test_basket_and_preferences_fit_and_pass_axe_in_both_themes(
    live_server: LiveServer,
    look_context: Callable[[int], BrowserContext],
    shots: Callable[[Page, str, int], None],
    width: int,
) -> None:
    """The basket (with lines in it) and the preferences page, in the light and the dark
    theme, signed out: no sideways scrolling, no blocking axe violation (colour contrast
    included). The README's basket picture is the dark theme, to show both additions."""
    page = look_context(width).new_page()
    look = Look(page, width)
    add_to_basket(page, live_server, "tea", 2)
    add_to_basket(page, live_server, "mug")
    expect(page.locator("#basket-count")).to_have_text("3", timeout=QUICK_TIMEOUT)
    for theme in ("light", "dark"):
        page.goto(live_server.url("/preferences"))
        page.locator("main").get_by_label(theme.capitalize(), exact=True).check()
        page.locator("main form").get_by_role("button", name="Save").click()
        expect(page.locator("html")).to_have_attribute("data-theme", theme, timeout=QUICK_TIMEOUT)
        look.check(f"/preferences, {theme} theme")
        page.goto(live_server.url("/basket"))
        wait_settled(page, "unauthenticated")
        look.check(f"/basket, {theme} theme")
    shots(page, "basket", width)
