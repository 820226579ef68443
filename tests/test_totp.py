"""The authenticator app (TOTP) and recovery codes, with codes computed here from the secret the
set-up page shows (issue 17; ASVS 2.7/2.8)."""

from __future__ import annotations

import re

import pyotp
import pytest
from helpers import AuthActions, csrf_token

from webapp.db import get_db
from webapp.models import RecoveryCode, SignInEvent, TotpAuthenticator
from webapp.users import find_user

SECRET = re.compile(r'data-totp-secret="([A-Z2-7]+)"')
RECOVERY = re.compile(r'data-recovery-code="([a-z0-9-]+)"')


def code_at(secret: str, clock, offset_steps: int = 0) -> str:  # type: ignore[no-untyped-def]
    return pyotp.TOTP(secret).at(clock.time + 30 * offset_steps)


def post(client, path: str, **fields: str):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf_token": csrf_token(client, "/account/security"), **fields})


def turn_on(client, auth, clock) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """Sign in, set up the app from the security page, confirm a first code; the secret and
    the recovery codes as shown."""
    assert auth.login().status_code == 303
    page = post(client, "/account/totp/setup")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    secret = SECRET.search(html).group(1)
    assert 'src="data:image/svg+xml' in html and "<script" not in html.split("<main")[1]
    confirmed = post(client, "/account/totp/confirm", code=code_at(secret, clock))
    assert confirmed.status_code == 200
    codes = RECOVERY.findall(confirmed.get_data(as_text=True))
    assert confirmed.headers["Cache-Control"] == "no-store"
    auth.logout()
    clock.advance(30)  # the confirming code is used: the next step's code signs in
    return secret, codes


def verify(client, **fields: str):  # type: ignore[no-untyped-def]
    return client.post("/login/verify", data={"csrf_token": csrf_token(client, "/login"), **fields})


def test_v2_8_set_up_shows_secret_qr_and_ten_hashed_recovery_codes(app, client, auth, user, clock):
    secret, codes = turn_on(client, auth, clock)
    assert len(codes) == 10 and len(set(codes)) == 10
    with app.app_context():
        stored = get_db().query(RecoveryCode).all()
        assert len(stored) == 10
        assert not any(code.replace("-", "") in row.code_hash for row in stored for code in codes)
        assert get_db().get(TotpAuthenticator, user.id).secret == secret


def test_a_wrong_first_code_does_not_turn_the_app_on(app, client, auth, user, clock):
    auth.login()
    html = post(client, "/account/totp/setup").get_data(as_text=True)
    secret = SECRET.search(html).group(1)
    wrong = f"{(int(code_at(secret, clock)) + 1) % 1_000_000:06d}"
    assert post(client, "/account/totp/confirm", code=wrong).status_code == 400
    with app.app_context():
        assert get_db().get(TotpAuthenticator, user.id) is None


def test_v2_8_password_leads_to_verify_and_nobody_is_signed_in_until_the_code(
    client, auth, user, clock
):
    secret, _ = turn_on(client, auth, clock)
    response = auth.login(next="/account/sessions")
    assert response.status_code == 303 and response.headers["Location"] == "/login/verify"
    assert client.get("/session").json == {}
    assert client.get("/account/security").status_code == 302
    page = client.get("/login/verify")
    assert page.status_code == 200 and 'name="code"' in page.get_data(as_text=True)
    done = verify(client, code=code_at(secret, clock))
    assert done.status_code == 303 and done.headers["Location"] == "/account/sessions"
    session = client.get("/session").json
    assert session["user"]["username"] == "alice"
    assert session["method"] == "password+totp"
    page = client.get("/account/sessions").get_data(as_text=True)
    assert "with a password and an authenticator app" in page


def test_v2_8_wrong_code_is_401_and_signs_nobody_in(client, auth, user, clock):
    secret, _ = turn_on(client, auth, clock)
    auth.login()
    wrong = f"{(int(code_at(secret, clock)) + 1) % 1_000_000:06d}"
    assert verify(client, code=wrong).status_code == 401
    assert verify(client, code="abcdef").status_code == 401
    assert client.get("/session").json == {}


def test_v2_8_4_a_code_is_accepted_once_and_an_older_one_never(client, auth, user, clock, caplog):
    secret, _ = turn_on(client, auth, clock)
    auth.login()
    code = code_at(secret, clock)
    assert verify(client, code=code).status_code == 303
    auth.logout()
    auth.login()
    assert "totp_code_reused" not in caplog.text
    assert verify(client, code=code).status_code == 401  # the same code, same window: refused
    assert "totp_code_reused" in caplog.text  # 2.8.5: logged, and the user told
    assert verify(client, code=code_at(secret, clock, -1)).status_code == 401  # older step
    clock.advance(30)
    assert verify(client, code=code_at(secret, clock)).status_code == 303


def test_clock_drift_of_one_step_is_accepted(client, auth, user, clock):
    secret, _ = turn_on(client, auth, clock)
    auth.login()
    assert verify(client, code=code_at(secret, clock, 1)).status_code == 303


def test_v2_6_recovery_code_signs_in_once(client, auth, user, clock):
    _, codes = turn_on(client, auth, clock)
    auth.login()
    assert verify(client, recovery_code=codes[0].upper()).status_code == 303
    assert client.get("/session").json["method"] == "recovery_code"
    auth.logout()
    auth.login()
    assert verify(client, recovery_code=codes[0]).status_code == 401
    assert verify(client, recovery_code=codes[1]).status_code == 303


def test_regenerated_recovery_codes_replace_the_old_ones(client, auth, user, clock):
    secret, old = turn_on(client, auth, clock)
    auth.login()
    verify(client, code=code_at(secret, clock))
    new = RECOVERY.findall(post(client, "/account/recovery-codes").get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    auth.logout()
    auth.login()
    assert verify(client, recovery_code=old[2]).status_code == 401
    assert verify(client, recovery_code=new[2]).status_code == 303


def test_v2_2_1_codes_are_throttled_with_the_username(app, client, auth, user, clock):
    secret, _ = turn_on(client, auth, clock)
    auth.login()
    wrong = f"{(int(code_at(secret, clock)) + 1) % 1_000_000:06d}"
    statuses = [verify(client, code=wrong).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    assert verify(client, code=code_at(secret, clock)).status_code == 429  # right, but locked
    with app.app_context():
        failures = get_db().query(SignInEvent).filter_by(outcome="failure").all()
        assert {row.method for row in failures} == {"password+totp"}


def test_the_pending_step_expires_and_belongs_to_its_browser(app, client, auth, user, clock):
    secret, _ = turn_on(client, auth, clock)
    auth.login()
    stranger = app.test_client()
    assert verify(stranger, code=code_at(secret, clock)).status_code == 303
    assert stranger.get("/session").json == {}  # sent back to sign in: nothing pending here
    clock.advance(301)
    response = verify(client, code=code_at(secret, clock))
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/session").json == {}


def test_turning_the_app_off_needs_a_fresh_sign_in(client, auth, user, clock):
    secret, _ = turn_on(client, auth, clock)
    auth.login()
    verify(client, code=code_at(secret, clock))
    clock.advance(601)
    response = post(client, "/account/totp/disable")
    assert response.status_code == 303 and "/account/reauthenticate" in response.headers["Location"]
    assert "Authenticator app" in client.get("/account/security").get_data(as_text=True)
    client.post(
        "/account/reauthenticate",
        data={"password": "correct horse battery", "csrf_token": csrf_token(client, "/")},
    )
    assert post(client, "/account/totp/disable").status_code == 303
    auth.logout()
    assert auth.login().headers["Location"] == "/profile"  # no second step any more


def test_operator_turns_the_app_off_and_ends_the_sessions(app, client, auth, user, clock):
    secret, _ = turn_on(client, auth, clock)
    auth.login()
    verify(client, code=code_at(secret, clock))
    result = app.test_cli_runner().invoke(args=["users", "mfa-off", "alice"])
    assert result.exit_code == 0, result.output
    assert "turned off" in result.output and "1 session(s) ended" in result.output
    assert client.get("/session").json == {}
    assert AuthActions(app.test_client()).login().headers["Location"] == "/profile"
    with app.app_context():
        assert find_user(get_db(), "alice") is not None
        assert get_db().query(RecoveryCode).count() == 0


def test_turning_the_app_on_ends_the_other_devices_remember_me(app, client, auth, user, clock):
    """A device remembered before the app was on never gave a code: once its session ends it
    must sign in with one, not restore itself. The device that turned the app on stays
    remembered, and so does a device remembered afterwards (it gave a code)."""
    phone = app.test_client()
    assert AuthActions(phone).login(remember=True).status_code == 303
    assert auth.login(remember=True).status_code == 303
    html = post(client, "/account/totp/setup").get_data(as_text=True)
    secret = SECRET.search(html).group(1)
    assert post(client, "/account/totp/confirm", code=code_at(secret, clock)).status_code == 200
    clock.advance(30)
    tablet = app.test_client()
    assert AuthActions(tablet).login(remember=True).headers["Location"].startswith("/login/verify")
    assert verify(tablet, code=code_at(secret, clock)).status_code == 303

    clock.advance(app.config["IDLE_TIMEOUT"] + 1)  # every session has ended; cookies remain
    for device in (phone, client, tablet):
        assert device.get("/session").json == {}  # expired (a poll never restores)
    assert phone.get("/profile").status_code == 302
    assert client.get("/profile").status_code == 200
    assert tablet.get("/profile").status_code == 200


@pytest.mark.parametrize("path", ["/account/totp/setup", "/account/totp/confirm"])
def test_set_up_needs_a_signed_in_user(client, path):
    response = client.post(path, data={"csrf_token": csrf_token(client, "/login")})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_v2_5_5_turning_the_app_on_and_off_is_told_by_mail(app, client, auth, user, clock):
    """ASVS 2.5.5 / 2.8.5: each change of a factor mails the account's address (the outbox)."""
    from pathlib import Path

    from webapp import mail

    secret, _ = turn_on(client, auth, clock)
    auth.login()
    verify(client, code=code_at(secret, clock))
    assert post(client, "/account/totp/disable").status_code == 303
    mail.settle(app)
    bodies = [p.read_text() for p in (Path(app.instance_path) / "outbox").glob("*.eml")]
    told = [b for b in bodies if "A change to how you sign in" in b]
    assert any("an authenticator app was turned on" in b for b in told), bodies
    assert any("the authenticator app was turned off" in b for b in told), bodies
    assert all("alice@example.com" in b for b in told)
