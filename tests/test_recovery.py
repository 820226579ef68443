"""Account recovery through a real SMTP server (aiosmtpd on a loopback port): password reset end
to end, verified email (sign-up, change of address, sign-in by email, uniqueness), the "was
this you?" notice of a new device, and the operator's commands."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD, AuthActions, csrf_token, wait_until
from support.smtp import Inbox, SmtpServer, link_in, path_of, plain_text, smtp_server

from webapp import mail, notices
from webapp.db import get_db
from webapp.models import KnownDevice, MailToken, User
from webapp.users import create_user, find_user, set_password

NEW_PASSWORD = "a brand new passphrase"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0"
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BASE_URL = "https://accounts.example.org"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def app_config(app_config: dict[str, object], smtp: SmtpServer) -> dict[str, object]:
    return {**app_config, "MAIL_URL": smtp.url, "BASE_URL": BASE_URL}


@pytest.fixture
def inbox(smtp: SmtpServer) -> Inbox:
    return smtp.inbox


@pytest.fixture
def verified_user(app: Flask) -> User:
    with app.app_context():
        return create_user(
            get_db(), "alice", PASSWORD, "Alice", "alice@example.com", email_verified=True
        )


def browser(app: Flask, user_agent: str = FIREFOX) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client


def post(client: FlaskClient, path: str, **data: str):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf_token": csrf_token(client, "/"), **data})


def forgot(client: FlaskClient, email: str):  # type: ignore[no-untyped-def]
    return post(client, "/password/forgot", email=email)


def without_csrf(html: str) -> str:
    return re.sub(r'(name="csrf[-_]token"[^>]*value|content)="[^"]*"', "", html)


# password reset -------------------------------------------------------------------------------


def test_v2_5_reset_end_to_end(app: Flask, inbox: Inbox, verified_user: User) -> None:
    """Request, mail, link, new password; old sessions and remembered devices dead, the old
    link dead, a second use refused, the user told by mail."""
    old_device = browser(app)
    assert AuthActions(old_device).login(remember=True).status_code == 303
    other = browser(app, CHROME)
    assert AuthActions(other).login().status_code == 303
    inbox.wait(1)  # the new device's notice
    requester = browser(app)
    response = forgot(requester, "ALICE@example.com")
    assert response.status_code == 200
    assert "a link to choose a new password is on its way" in response.get_data(as_text=True)
    reset_mail = inbox.wait(2)[1]
    assert reset_mail["To"] == "alice@example.com"
    assert reset_mail["Subject"] == "Reset your password"
    link = link_in(reset_mail)
    assert link.startswith(f"{BASE_URL}/password/reset/")
    page = requester.get(path_of(link))
    assert page.status_code == 200 and "new password for <strong>alice" in page.get_data(
        as_text=True
    )
    done = post(requester, path_of(link), new_password=NEW_PASSWORD, confirm=NEW_PASSWORD)
    assert (done.status_code, done.headers["Location"]) == (303, "/login")
    assert "Your password has been changed" in requester.get("/login").get_data(as_text=True)
    for client in (old_device, other):  # every session and remember-me token ended
        assert client.get("/profile").status_code == 302
    assert requester.get(path_of(link)).status_code == 400  # the link worked once
    again = post(requester, path_of(link), new_password="yet another passphrase", confirm="x")
    assert again.status_code == 400
    assert "Ask for a new reset link" in again.get_data(as_text=True)
    assert AuthActions(browser(app)).login().status_code == 401  # the old password is gone
    assert AuthActions(browser(app)).login(password=NEW_PASSWORD).status_code == 303
    changed = inbox.wait(3)[2]
    assert changed["Subject"] == "Your password was changed"
    assert link_in(changed) == f"{BASE_URL}/password/forgot"


def test_v2_5_forgot_answers_the_same_whether_or_not_the_address_has_an_account(
    app: Flask, inbox: Inbox, verified_user: User
) -> None:
    known = forgot(browser(app), "alice@example.com")
    unknown = forgot(browser(app), "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    known_page = without_csrf(known.get_data(as_text=True)).replace("alice", "X")
    unknown_page = without_csrf(unknown.get_data(as_text=True)).replace("nobody", "X")
    assert known_page == unknown_page
    mail.settle(app)
    inbox.wait(1)
    mail.settle(app)
    assert [m["To"] for m in inbox.messages] == ["alice@example.com"]
    # The sender deletes the queued file just after the server has taken the message.
    wait_until(lambda: mail.outbox(app).pending_names() == [])


def test_reset_requests_are_limited_per_address_and_per_client(
    app: Flask, verified_user: User
) -> None:
    client = browser(app)
    for _ in range(3):
        assert forgot(client, "alice@example.com").status_code == 200
    limited = forgot(client, "Alice@Example.com")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    for n in range(7):  # other addresses from the same client, up to its limit
        assert forgot(client, f"user{n}@example.com").status_code == 200
    assert forgot(client, "someone.else@example.com").status_code == 429


def test_reset_link_expires(app: Flask, inbox: Inbox, verified_user: User, clock) -> None:  # type: ignore[no-untyped-def]
    client = browser(app)
    forgot(client, "alice@example.com")
    path = path_of(link_in(inbox.wait(1)[0]))
    clock.advance(app.config["RESET_TIMEOUT"] + 1)
    response = client.get(path)
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)


def test_reset_link_dies_when_the_password_changes(
    app: Flask, inbox: Inbox, verified_user: User
) -> None:
    client = browser(app)
    forgot(client, "alice@example.com")
    path = path_of(link_in(inbox.wait(1)[0]))
    with app.app_context():
        set_password(get_db(), find_user(get_db(), "alice"), "changed by the operator")
    assert client.get(path).status_code == 400
    assert post(client, path, new_password=NEW_PASSWORD, confirm=NEW_PASSWORD).status_code == 400


@pytest.mark.parametrize("token", ["x" * 43, "short", "%00" * 43, "a" * 500])
def test_unknown_reset_links_get_400_on_get_and_post(app: Flask, token: str) -> None:
    client = browser(app)
    assert client.get(f"/password/reset/{token}").status_code == 400
    assert post(client, f"/password/reset/{token}", new_password=NEW_PASSWORD).status_code == 400


def test_reset_refuses_a_weak_password_and_keeps_the_link(
    app: Flask, inbox: Inbox, verified_user: User
) -> None:
    client = browser(app)
    forgot(client, "alice@example.com")
    path = path_of(link_in(inbox.wait(1)[0]))
    weak = post(client, path, new_password="short", confirm="short")
    assert weak.status_code == 400
    assert client.get(path).status_code == 200


def test_only_hashes_of_tokens_are_stored(app: Flask, inbox: Inbox, verified_user: User) -> None:
    forgot(browser(app), "alice@example.com")
    token = path_of(link_in(inbox.wait(1)[0])).rsplit("/", 1)[1]
    with app.app_context():
        stored = get_db().query(MailToken).one()
    assert token not in (stored.token_hash, stored.bound_to)


# verified email -------------------------------------------------------------------------------


def signup(client: FlaskClient, email: str = "carol@example.com"):  # type: ignore[no-untyped-def]
    data = {"username": "carol", "name": "Carol", "email": email}
    return post(client, "/signup", password=PASSWORD, confirm=PASSWORD, **data)


def test_sign_up_sends_a_verification_link_that_confirms_on_post(app: Flask, inbox: Inbox) -> None:
    client = browser(app)
    assert signup(client).status_code == 303
    (message,) = inbox.wait(1)
    assert message["To"] == "carol@example.com"
    path = path_of(link_in(message))
    assert path.startswith("/account/email/verify/")
    with app.app_context():
        assert not find_user(get_db(), "carol").email_verified
    page = client.get(path)  # a mail scanner's GET changes nothing
    assert page.status_code == 200 and "Confirm" in page.get_data(as_text=True)
    with app.app_context():
        assert not find_user(get_db(), "carol").email_verified
    confirmed = post(client, path)
    assert (confirmed.status_code, confirmed.headers["Location"]) == (303, "/account/profile")
    with app.app_context():
        assert find_user(get_db(), "carol").email_verified
    assert client.get(path).status_code == 400  # once
    by_email = AuthActions(browser(app)).login(username="Carol@Example.com")
    assert by_email.status_code == 303


def test_an_unverified_email_does_not_sign_in(app: Flask, inbox: Inbox) -> None:
    assert signup(browser(app)).status_code == 303
    assert AuthActions(browser(app)).login(username="carol@example.com").status_code == 401


def test_v2_5_5_email_change_takes_effect_when_confirmed_and_tells_the_old_address(
    app: Flask, inbox: Inbox, verified_user: User
) -> None:
    client = browser(app)
    AuthActions(client).login()
    data = {"name": "Alice", "email": "alice@new.example"}
    response = post(client, "/account/profile", **data)
    assert response.status_code == 303
    assert client.get("/session").json["user"]["email"] == "alice@example.com"  # not yet
    (message,) = inbox.wait(1)
    assert message["To"] == "alice@new.example"
    assert post(client, path_of(link_in(message))).status_code == 303
    assert client.get("/session").json["user"]["email"] == "alice@new.example"
    told = inbox.wait(2)[1]
    assert told["To"] == "alice@example.com"
    assert "alice@new.example" in plain_text(told)
    assert AuthActions(browser(app)).login(username="alice@new.example").status_code == 303
    assert AuthActions(browser(app)).login(username="alice@example.com").status_code == 401


def test_verified_addresses_are_unique_regardless_of_case(
    app: Flask, inbox: Inbox, verified_user: User
) -> None:
    client = browser(app)
    assert signup(client, email="ALICE@example.com").status_code == 303  # allowed, unverified
    path = path_of(link_in(inbox.wait(1)[0]))
    response = post(client, path)
    assert response.status_code == 400
    assert "belongs to another account" in response.get_data(as_text=True)
    with app.app_context():
        assert not find_user(get_db(), "carol").email_verified


def test_users_list_shows_verification_and_resend_sends_a_new_link(
    app: Flask, inbox: Inbox, verified_user: User
) -> None:
    assert signup(browser(app)).status_code == 303
    first = inbox.wait(1)[0]
    runner = app.test_cli_runner()
    verified = runner.invoke(args=["users", "list", "--verified"]).output
    unverified = runner.invoke(args=["users", "list", "--unverified"]).output
    assert "alice" in verified and "carol" not in verified
    assert "carol" in unverified and "alice" not in unverified
    assert "VERIFIED" in runner.invoke(args=["users", "list"]).output
    result = runner.invoke(args=["users", "resend-verification", "carol"])
    assert result.exit_code == 0, result.output
    second = inbox.wait(2)[1]
    assert second["To"] == "carol@example.com"
    assert browser(app).get(path_of(link_in(first))).status_code == 400  # replaced
    assert browser(app).get(path_of(link_in(second))).status_code == 200
    already = runner.invoke(args=["users", "resend-verification", "alice"])
    assert already.exit_code == 1 and "already verified" in already.output


# "was this you?" ----------------------------------------------------------------------------


def test_a_new_device_gets_a_notice_whose_link_ends_exactly_that_session(
    app: Flask, inbox: Inbox, verified_user: User
) -> None:
    mine = browser(app, FIREFOX)
    assert AuthActions(mine).login().status_code == 303  # the first device: no notice
    again = browser(app, FIREFOX)
    assert AuthActions(again).login().status_code == 303  # a known device: no notice
    mail.settle(app)
    assert mail.outbox(app).pending_names() == [] and inbox.messages == []
    stranger = browser(app, CHROME)
    assert AuthActions(stranger).login(remember=True).status_code == 303
    (notice,) = inbox.wait(1)
    text = plain_text(notice)
    assert notice["To"] == "alice@example.com"
    assert "Chrome 131 on Linux" in text and "127.0.0.1" in text and "UTC" in text
    path = path_of(link_in(notice))
    page = mine.get(path)  # a scanner's GET ends nothing
    assert page.status_code == 200
    assert stranger.get("/profile").status_code == 200
    ended = post(mine, path)
    assert ended.status_code == 200
    assert "Change my password" in ended.get_data(as_text=True)
    stranger.delete_cookie("session")  # only the remember-me cookie is left: it is dead too
    assert stranger.get("/profile").status_code == 302
    assert mine.get("/profile").status_code == 200
    assert again.get("/profile").status_code == 200
    assert post(mine, path).status_code == 400  # single use
    with app.app_context():
        assert get_db().query(KnownDevice).count() == 2


class Forgetful:
    """A database session whose `get` finds nothing: the parallel sign-in from the same new
    device recorded it after this one looked."""

    def __init__(self, db: object) -> None:
        self.db = db

    def get(self, *_: object) -> None:
        return None

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


def test_parallel_sign_ins_from_one_new_device_both_succeed_and_tell_nobody(
    app: Flask, inbox: Inbox, verified_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loser of the race to record the device is signed in all the same (it was a 503)."""
    assert AuthActions(browser(app, FIREFOX)).login().status_code == 303
    monkeypatch.setattr(notices, "get_db", lambda: Forgetful(get_db()))
    second = browser(app, FIREFOX)
    assert AuthActions(second).login().status_code == 303
    assert second.get("/profile").status_code == 200
    mail.settle(app)
    assert inbox.messages == [] and mail.outbox(app).pending_names() == []
    with app.app_context():
        assert get_db().query(KnownDevice).count() == 1


def test_no_notice_goes_to_an_unverified_address(app: Flask, inbox: Inbox, user: User) -> None:
    AuthActions(browser(app, FIREFOX)).login()
    AuthActions(browser(app, CHROME)).login()
    mail.settle(app)
    assert inbox.messages == [] and mail.outbox(app).pending_names() == []


def test_v2_5_5_a_password_changed_on_the_account_page_is_told_by_mail(
    app: Flask, inbox: Inbox, verified_user: User
) -> None:
    client = browser(app)
    AuthActions(client).login()
    data = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    assert post(client, "/account/password", **data).status_code == 303
    (told,) = inbox.wait(1)
    assert (told["To"], told["Subject"]) == ("alice@example.com", "Your password was changed")
    assert link_in(told) == f"{BASE_URL}/password/forgot"


def test_expired_links_are_deleted_when_new_ones_are_issued(
    app: Flask, inbox: Inbox, verified_user: User, clock
) -> None:  # type: ignore[no-untyped-def]
    forgot(browser(app), "alice@example.com")
    inbox.wait(1)
    clock.advance(app.config["RESET_TIMEOUT"] + 1)
    forgot(browser(app), "alice@example.com")
    inbox.wait(2)
    with app.app_context():
        assert get_db().query(MailToken).count() == 1


def test_v2_2_1_username_and_verified_email_share_one_lock(app: Flask, verified_user: User) -> None:
    """Alternating the username and the verified email must not double the tries: wrong
    passwords count under the account, whichever name was typed."""
    auth = AuthActions(app.test_client())
    for attempt in range(5):
        typed = "alice" if attempt % 2 else "ALICE@example.com"
        assert auth.login(typed, "wrong password, try again").status_code == 401
    for typed in ("alice", "alice@example.com"):
        assert auth.login(typed, PASSWORD).status_code == 429
    with app.app_context():
        from webapp.models import SignInEvent

        failures = get_db().query(SignInEvent).filter_by(outcome="failure").all()
    assert {row.user_id for row in failures} == {verified_user.id}  # the history shows them
