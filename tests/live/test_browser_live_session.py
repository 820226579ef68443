"""The live session widget (issue 4) in Debian's chromium against a real gunicorn: other tabs
follow a sign-in, a sign-out and a profile change at once (not at the next poll), a page that
needs sign-in is left for /login when its session ends, a hidden tab does not poll, an
unchanged poll swaps nothing, the expiry warning and "Stay signed in", and the reason a
session ended (expired, signed out in another tab, ended from another device). Without
JavaScript, signing in and out is test_browser_widget.py's.

Each test signs up its own user (through /signup, in a browser context of its own that then
signs out), so that no test sees another's sessions or profile changes. The tests need
different server settings, hence several servers, each shared by the tests that need the same
settings (pytest groups them).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import (
    BrowserContext,
    Page,
    Request,
    Response,
    Route,
    expect,
)
from test_browser_widget import (
    QUICK_TIMEOUT,
    SIGNED_OUT_PAGE,
    SIGNED_OUT_TEXT,
    STATUS,
    WIDGET,
    BrowserErrors,
)

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.browser]

PASSWORD = "a long enough password for tests"
REASON = ".session-reason"
WARNING = ".session-warning"
EXPIRED = "Your session expired."
SIGNED_OUT_ELSEWHERE = "You signed out in another tab."
REVOKED = "This session was ended from another device."
#: How soon another tab's change must show: far less than `slow_poll`'s interval.
CROSS_TAB_TIMEOUT = 1_000


def server_with(**settings: int) -> pytest.MarkDecorator:
    """Run the test against a `live_server` with these settings (conftest's SETTINGS_ENV)."""
    pairs = tuple(sorted(settings.items()))
    label = ",".join(f"{name}={value}" for name, value in pairs)
    return pytest.mark.parametrize("live_server", [pairs], indirect=True, ids=[label])


#: Polls far apart: whatever shows within a second came from another tab, not from a poll.
slow_poll = server_with(poll_seconds=60)
#: Polls every second (the default server of the live tests).
fast_poll = server_with(poll_seconds=1)
#: The warning shows WARNING_SECONDS (120) before the end: an idle timeout of 123 s shows it
#: 3 s after the last activity. Activity is recorded at most once a minute (the default), so
#: the pages the test loads do not push it back; only "Stay signed in" does.
warning_soon = server_with(poll_seconds=1, idle_timeout=123)
#: Sessions that end 4 s after the last recorded activity.
expiring = server_with(poll_seconds=1, idle_timeout=4, touch_interval=1)


@dataclass(frozen=True)
class Account:
    username: str
    name: str
    password: str = PASSWORD


@pytest.fixture
def account(live_server: LiveServer, new_context: Callable[..., BrowserContext]) -> Account:
    """A new user, made through /signup by a browser context of its own (so that the sign-in
    history shows a browser), whose sign-up session is signed out again."""
    suffix = uuid.uuid4().hex[:8]
    created = Account(username=f"user-{suffix}", name=f"Tester {suffix}")
    api = new_context().request
    form = api.get(live_server.url("/signup"))
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', form.text())
    assert token, form.text()
    response = api.post(
        live_server.url("/signup"),
        form={
            "csrf_token": token[1],
            "username": created.username,
            "name": created.name,
            "email": f"{created.username}@example.com",
            "password": created.password,
            "confirm": created.password,
        },
        max_redirects=0,
    )
    assert response.status == 303, response.text()
    # Sign-in gave the session a new CSRF token; /csrf tells it.
    csrf = api.get(live_server.url("/csrf")).json()["csrfToken"]
    signed_out = api.post(live_server.url("/logout"), form={"csrf_token": csrf}, max_redirects=0)
    assert signed_out.status == 303
    assert api.get(live_server.url("/session")).json() == {}
    return created


@pytest.fixture
def errors(live_server: LiveServer, context: BrowserContext) -> BrowserErrors:
    """Console errors, uncaught exceptions and CSP violations of pytest-playwright's
    `context`; tests watch any other context they open."""
    collected = BrowserErrors(live_server)
    collected.watch(context)
    return collected


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where pictures of a state go: the test's own folder (the README's pictures are made by
    test_browser_look.py and test_passkeys_live.py with WEBAPP_SCREENSHOTS=1)."""
    return tmp_path


def header_shot(page: Page, path: Path) -> None:
    page.locator("header").screenshot(path=path, animations="disabled")
    assert path.stat().st_size > 0


def sign_in(page: Page, server: LiveServer, who: Account) -> None:
    """Through the form, as a person would; ends on /profile."""
    page.goto(server.url("/login"))
    page.get_by_label("Username").fill(who.username)
    page.get_by_label("Password").fill(who.password)
    page.locator("main form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(server.url("/profile"), timeout=QUICK_TIMEOUT)
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Welcome, {who.name}!", timeout=QUICK_TIMEOUT
    )


def open_home(page: Page, server: LiveServer, status: str) -> None:
    """`/`, a public page: its widget starts `loading` and fetches /session."""
    page.goto(server.url("/"))
    expect(page.locator(WIDGET)).to_have_attribute(STATUS, status, timeout=QUICK_TIMEOUT)


def session_requests(page: Page, server: LiveServer) -> list[Request]:
    """Every request this page makes to /session from now on (the list grows)."""
    seen: list[Request] = []
    target = server.url("/session")

    def record(request: Request) -> None:
        if request.url == target:
            seen.append(request)

    page.on("request", record)
    return seen


def wait_for(page: Page, condition: Callable[[], bool], seconds: float, message: str) -> None:
    """A condition on the test's side; Playwright delivers events only while the test waits
    on it, so wait in short steps through the page."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message
        page.wait_for_timeout(25)


def expires(page: Page, server: LiveServer) -> datetime:
    """`expires` of GET /session (JSON), asked with the page's cookies."""
    data = page.request.get(server.url("/session")).json()
    assert "expires" in data, data
    return datetime.fromisoformat(data["expires"])


# other tabs follow at once -----------------------------------------------------------------


@slow_poll
@pytest.mark.parametrize(
    "a_waits",
    [
        pytest.param("required-page-boosted", id="required-page-boosted"),
        pytest.param("required-page-loaded", id="required-page-loaded"),
        pytest.param("public-page", id="public-page"),
    ],
)
def test_other_tab_follows_sign_in_and_sign_out_at_once(
    live_server: LiveServer,
    context: BrowserContext,
    account: Account,
    errors: BrowserErrors,
    a_waits: str,
) -> None:
    """Polls are a minute apart, so only the other tab's message can bring the change within
    a second. Tab B never reloads (its JS marker survives). When B signs out, tab A leaves a
    page that needs sign-in for the sign-in form (whether A got there by the boosted sign-in
    form or by loading it), or on a public page says why it is signed out."""
    tab_b = context.new_page()
    open_home(tab_b, live_server, "unauthenticated")
    widget_b = tab_b.locator(WIDGET)
    tab_b.evaluate("window.__marker = 1")

    tab_a = context.new_page()
    sign_in(tab_a, live_server, account)  # a boosted form: A is on /profile without a reload
    expect(widget_b).to_have_attribute(STATUS, "authenticated", timeout=CROSS_TAB_TIMEOUT)
    expect(widget_b).to_contain_text(f"Welcome, {account.name}!", timeout=QUICK_TIMEOUT)
    assert tab_b.evaluate("window.__marker") == 1, "tab B reloaded"

    widget_a = tab_a.locator(WIDGET)
    if a_waits == "required-page-loaded":
        tab_a.goto(live_server.url("/profile"))
    elif a_waits == "public-page":
        open_home(tab_a, live_server, "authenticated")
    expect(widget_a).to_have_attribute(STATUS, "authenticated", timeout=QUICK_TIMEOUT)
    tab_a.evaluate("window.__marker = 1")

    # B announces the sign-out as the form is submitted, before the server has ended the
    # session, and A looks again 0.3 s and 1 s later. The sign-out request is held for longer
    # (a slow network), so that the deterministic case is the one to get right: A learns the
    # session ended only after B's widget shows it (B then says "changed" too).
    def slow_sign_out(route: Route) -> None:
        time.sleep(1.2)
        route.continue_()

    tab_b.route(live_server.url("/logout"), slow_sign_out)
    widget_b.get_by_role("button", name="Sign out").click()
    expect(tab_b).to_have_url(live_server.url(SIGNED_OUT_PAGE), timeout=QUICK_TIMEOUT)
    expect(tab_b.locator("main .notice")).to_have_text("You are signed out.")
    expect(widget_b).to_have_attribute(STATUS, "unauthenticated", timeout=QUICK_TIMEOUT)
    # This tab signed out itself: no reason to give.
    expect(widget_b.locator(REASON)).to_have_text("", timeout=QUICK_TIMEOUT)

    if a_waits.startswith("required-page"):
        # useSession({required: true}): the page is left for the sign-in form, which brings
        # the person back to it, and says why it is there.
        expect(tab_a).to_have_url(
            live_server.url("/login?next=%2Fprofile&reason=signout"), timeout=2_000
        )
        expect(tab_a.get_by_role("heading", level=1)).to_have_text("Sign in")
        expect(tab_a.locator("main .notice")).to_have_text(SIGNED_OUT_ELSEWHERE)
        expect(tab_a.locator("main form input[name=next]")).to_have_value("/profile")
    else:
        expect(widget_a).to_have_attribute(STATUS, "unauthenticated", timeout=2_000)
        expect(widget_a).to_contain_text(SIGNED_OUT_TEXT, timeout=QUICK_TIMEOUT)
        expect(widget_a.locator(REASON)).to_have_text(SIGNED_OUT_ELSEWHERE, timeout=QUICK_TIMEOUT)
        assert tab_a.evaluate("window.__marker") == 1, "tab A reloaded"
    assert errors.seen == [], "\n".join(errors.seen)


@slow_poll
def test_profile_change_reaches_other_tab_at_once(
    live_server: LiveServer, context: BrowserContext, account: Account, errors: BrowserErrors
) -> None:
    """next-auth's update(): a new name saved in one tab shows in the other tab's widget
    within a second, without a reload (polls are a minute apart)."""
    tab_a = context.new_page()
    sign_in(tab_a, live_server, account)
    tab_b = context.new_page()
    open_home(tab_b, live_server, "authenticated")
    widget_b = tab_b.locator(WIDGET)
    expect(widget_b).to_contain_text(f"Welcome, {account.name}!", timeout=QUICK_TIMEOUT)
    tab_b.evaluate("window.__marker = 1")

    new_name = f"Renamed {account.username}"
    tab_a.goto(live_server.url("/account/profile"))
    tab_a.get_by_label("Name").fill(new_name)
    tab_a.get_by_role("button", name="Save").click()
    expect(tab_a.locator("main .flash")).to_contain_text(
        "Your profile has been updated.", timeout=QUICK_TIMEOUT
    )
    expect(tab_a.locator(WIDGET)).to_contain_text(f"Welcome, {new_name}!", timeout=QUICK_TIMEOUT)

    expect(widget_b).to_contain_text(f"Welcome, {new_name}!", timeout=CROSS_TAB_TIMEOUT)
    expect(widget_b).to_have_attribute(STATUS, "authenticated")
    assert tab_b.evaluate("window.__marker") == 1, "tab B reloaded"
    assert errors.seen == [], "\n".join(errors.seen)


# polling -------------------------------------------------------------------------------------

#: Headless chromium reports every page as visible, whatever is in front (bringing another
#: page to the front, minimising the window through the DevTools protocol or freezing the page
#: change nothing: Playwright issue #3570). So the page's own `document.visibilityState` is
#: overridden, and `visibilitychange` fired, as the browser would on a tab switch: what is
#: tested is the widget's script obeying them.
HIDE = """hidden => {
    Object.defineProperty(document, "visibilityState", {
        configurable: true, get: () => (hidden ? "hidden" : "visible")
    });
    Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


@fast_poll
def test_hidden_tab_does_not_poll(
    live_server: LiveServer, page: Page, errors: BrowserErrors
) -> None:
    """Polls every second while visible; not one /session request while the tab is hidden;
    polling resumes once it is visible again. (Signed in or not, the widget polls alike.)"""
    open_home(page, live_server, "unauthenticated")
    requests = session_requests(page, live_server)
    wait_for(page, lambda: len(requests) >= 1, 2, "the visible tab does not poll every second")

    page.evaluate(HIDE, True)
    page.wait_for_timeout(100)  # a request already on its way may still be reported
    hidden = len(requests)
    page.wait_for_timeout(3_000)
    assert len(requests) == hidden, "a hidden tab polled /session"

    page.evaluate(HIDE, False)
    # At once (visibilitychange), then every second again.
    wait_for(page, lambda: len(requests) >= hidden + 2, 2.5, "polling did not resume")
    expect(page.locator(WIDGET)).to_have_attribute(STATUS, "unauthenticated")
    assert errors.seen == [], "\n".join(errors.seen)


@slow_poll
def test_tab_shown_again_asks_at_once(
    live_server: LiveServer, page: Page, errors: BrowserErrors
) -> None:
    """Polls are a minute apart: the request that follows showing the tab is the
    visibilitychange refetch, not a poll."""
    open_home(page, live_server, "unauthenticated")
    requests = session_requests(page, live_server)
    page.evaluate(HIDE, True)
    page.wait_for_timeout(300)
    assert requests == [], "a hidden tab asked /session"
    page.evaluate(HIDE, False)
    wait_for(page, lambda: len(requests) >= 1, 1, "showing the tab did not refetch /session")
    assert requests[0].headers.get("x-session-state") == page.locator(WIDGET).get_attribute(
        "data-state"
    )
    assert errors.seen == [], "\n".join(errors.seen)


@fast_poll
def test_unchanged_poll_is_204_and_swaps_nothing(
    live_server: LiveServer, page: Page, account: Account, errors: BrowserErrors
) -> None:
    """The widget sends the state token it shows; while the session is unchanged the server
    answers 204 and the very same element stays in the page."""
    sign_in(page, live_server, account)
    widget = page.locator(WIDGET)
    token = widget.get_attribute("data-state")
    assert token
    page.evaluate("document.getElementById('session-widget').__mark = 1")

    answers: list[Response] = []
    target = live_server.url("/session")

    def record(response: Response) -> None:
        if response.url == target:
            answers.append(response)

    page.on("response", record)
    wait_for(page, lambda: len(answers) >= 2, 4, "the widget did not poll twice")

    assert [answer.status for answer in answers] == [204] * len(answers)
    assert {answer.request.headers.get("x-session-state") for answer in answers} == {token}
    assert all(answer.request.headers.get("hx-request") == "true" for answer in answers)
    assert page.evaluate("document.getElementById('session-widget').__mark") == 1, (
        "the widget element was replaced"
    )
    expect(widget).to_have_attribute("data-state", token)
    assert errors.seen == [], "\n".join(errors.seen)


# why a session ended --------------------------------------------------------------------------


@fast_poll
@pytest.mark.parametrize("how", ["one-session", "all-others"])
def test_session_ended_from_another_device_says_so(
    live_server: LiveServer,
    context: BrowserContext,
    new_context: Callable[..., BrowserContext],
    account: Account,
    errors: BrowserErrors,
    screenshots: Path,
    how: str,
) -> None:
    """Device Y ends device X's session on /account/sessions (that session's own form, or
    "Sign out all other sessions"): X's widget, on a public page, shows why at its next poll."""
    device_x = context.new_page()
    sign_in(device_x, live_server, account)
    open_home(device_x, live_server, "authenticated")

    device_y = errors.watch(new_context()).new_page()
    sign_in(device_y, live_server, account)
    device_y.goto(live_server.url("/account/sessions"))
    rows = device_y.locator("ul.devices > li")
    expect(rows).to_have_count(2, timeout=QUICK_TIMEOUT)
    expect(rows.filter(has_text="This device")).to_have_count(1)
    if how == "one-session":
        path = screenshots / "sessions-page.png"
        device_y.screenshot(path=path, full_page=True, animations="disabled", caret="initial")
        assert path.stat().st_size > 0
        # Just signed in, so recently confirmed: one click, no password box per row, and a
        # button whose name says which session it ends.
        other = device_y.locator("ul.devices > li:not(.this-device)")
        name = re.compile(r"^End the .+ session$")
        other.get_by_role("button", name=name).click()
        expect(device_y.locator("main .flash")).to_contain_text(
            "session has been ended.", timeout=QUICK_TIMEOUT
        )
    else:
        device_y.get_by_role("button", name="Sign out all other sessions").click()
        expect(device_y.locator("main .flash")).to_contain_text(
            "Signed out of 1 other session.", timeout=QUICK_TIMEOUT
        )
    expect(rows).to_have_count(1, timeout=QUICK_TIMEOUT)

    widget_x = device_x.locator(WIDGET)
    expect(widget_x).to_have_attribute(STATUS, "unauthenticated", timeout=3_000)
    expect(widget_x.locator(REASON)).to_have_text(REVOKED, timeout=QUICK_TIMEOUT)
    # Device Y is still signed in.
    expect(device_y.locator(WIDGET)).to_have_attribute(STATUS, "authenticated")
    assert device_y.request.get(live_server.url("/session")).json()["user"]["username"] == (
        account.username
    )
    assert errors.seen == [], "\n".join(errors.seen)


@warning_soon
def test_expiry_warning_and_stay_signed_in(
    live_server: LiveServer,
    page: Page,
    account: Account,
    errors: BrowserErrors,
    screenshots: Path,
) -> None:
    """Two minutes before the session's end the widget warns, and "Stay signed in" pushes the
    end back: the warning goes and /session's `expires` moves later."""
    sign_in(page, live_server, account)
    widget = page.locator(WIDGET)
    # 123 s left: no warning yet (it shows at 120 s).
    expect(widget.locator(WARNING)).to_have_count(0)

    warning = widget.locator(WARNING)
    expect(warning).to_be_visible(timeout=7_000)
    expect(warning).to_contain_text("Your session ends")
    # A live countdown, "in 1:57" (the exact time stays for screen readers).
    expect(warning.locator(".countdown")).to_have_text(re.compile(r"^in [12]:\d\d$"))
    header_shot(page, screenshots / "widget-warning.png")
    before = expires(page, live_server)

    with page.expect_response(live_server.url("/session/keepalive")) as keepalive:
        warning.get_by_role("button", name="Stay signed in").click()
    assert keepalive.value.status == 200
    expect(widget.locator(WARNING)).to_have_count(0, timeout=QUICK_TIMEOUT)
    expect(widget).to_have_attribute(STATUS, "authenticated")
    after = expires(page, live_server)
    assert after > before, (before, after)
    assert errors.seen == [], "\n".join(errors.seen)


@expiring
def test_expired_session_says_so(
    live_server: LiveServer,
    page: Page,
    account: Account,
    errors: BrowserErrors,
    screenshots: Path,
) -> None:
    """A session that times out while a public page is open: the widget turns signed out at its
    next poll and says the session expired (nobody signed out, nothing was revoked)."""
    sign_in(page, live_server, account)
    open_home(page, live_server, "authenticated")
    widget = page.locator(WIDGET)
    expect(widget.locator(REASON)).to_have_text("")

    expect(widget).to_have_attribute(STATUS, "unauthenticated", timeout=8_000)
    expect(widget).to_contain_text(SIGNED_OUT_TEXT)
    expect(widget.locator(REASON)).to_have_text(EXPIRED, timeout=QUICK_TIMEOUT)
    header_shot(page, screenshots / "widget-expired.png")
    assert page.request.get(live_server.url("/session")).json() == {}
    assert errors.seen == [], "\n".join(errors.seen)
