"""Session tokens themselves (ASVS V3.1, V3.2, V3.5), passwords (V2.1) and the event log."""

from __future__ import annotations

import hashlib
import json
import logging
import re

import pytest
from helpers import PASSWORD, AuthActions, csrf_token, session_cookie, store_files

from webapp.db import get_db
from webapp.users import AccountError, authenticate, create_user


def test_v3_1_1_session_id_never_appears_in_urls_or_pages(client, auth, user):
    response = auth.login(next="/profile")
    sid = session_cookie(client)
    assert sid not in response.headers["Location"]
    for path in ("/", "/profile", "/account/sessions", "/session", "/logout"):
        body = client.get(path, headers={"HX-Request": "true"} if path == "/session" else {})
        assert sid not in body.get_data(as_text=True)


def test_v3_2_2_session_ids_carry_256_random_bits(app, user):
    ids = set()
    for _ in range(20):
        browser = app.test_client()
        AuthActions(browser).login()
        ids.add(session_cookie(browser))
    assert len(ids) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", sid) for sid in ids)  # 32 bytes, base64url


def test_v3_2_3_session_token_lives_only_in_an_httponly_cookie(client, auth, user):
    response = auth.login()
    header = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in header
    sid = session_cookie(client)
    assert sid not in json.dumps(client.get("/session").json)
    assert sid not in client.get("/csrf").get_data(as_text=True)


def test_v3_2_4_session_ids_come_from_the_secrets_module(client, user, monkeypatch):
    import flask_session.base

    monkeypatch.setattr(flask_session.base.secrets, "token_urlsafe", lambda n: "x" * n)
    AuthActions(client).login()
    assert session_cookie(client) == "x" * 32


def test_v3_2_4_store_keys_are_hashes_of_session_ids(app, client, auth, user):
    auth.login()
    sid = session_cookie(client)
    keys = list(store_files(app))  # Redis keys, or file names (cachelib hashes the key again)
    assert keys and all(sid not in key for key in keys)
    assert (
        app.session_interface._get_store_id(sid)
        == "session:" + hashlib.sha256(sid.encode()).hexdigest()
    )


def test_v3_2_1_index_holds_only_hashes_of_session_ids(app, client, auth, user):
    from webapp.models import UserSession

    auth.login()
    sid = session_cookie(client)
    with app.app_context():
        row = get_db().query(UserSession).one()
        assert sid not in (row.id, row.sid_hash)


def test_v3_5_2_api_is_authenticated_by_the_session_not_a_static_key(client, auth, user):
    assert client.get("/api/hello").status_code == 401
    auth.login()
    assert client.get("/api/hello").status_code == 200
    auth.logout()
    assert client.get("/api/hello").status_code == 401


# passwords (V2.1) -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 8, 11])
def test_v2_1_1_passwords_shorter_than_12_are_refused(app, length):
    with app.app_context(), pytest.raises(AccountError, match="at least 12"):
        create_user(get_db(), "short", "p" * length)


@pytest.mark.parametrize(
    ("length", "accepted"), [(12, True), (64, True), (128, True), (129, False)]
)
def test_v2_1_2_passwords_of_64_to_128_characters_are_accepted(app, length, accepted):
    with app.app_context():
        if accepted:
            create_user(get_db(), f"u{length}", "p" * length)
        else:
            with pytest.raises(AccountError, match="at most 128"):
                create_user(get_db(), f"u{length}", "p" * length)


def test_v2_1_3_passwords_are_never_truncated(app):
    long = "x" * 100 + "a" * 28
    with app.app_context():
        create_user(get_db(), "trunc", long)
        assert authenticate(get_db(), "trunc", "x" * 100 + "a" * 27 + "b") is None
        assert authenticate(get_db(), "trunc", long[:72]) is None
        assert authenticate(get_db(), "trunc", long) is not None


def test_passwords_are_argon2id_and_rehashed_when_parameters_change(app_config, app, user):
    from webapp import create_app

    with app.app_context():
        assert user.password_hash.startswith("$argon2id$")
    stronger = create_app({**app_config, "ARGON2_TIME_COST": 2})
    with stronger.app_context():
        rehashed = authenticate(get_db(), "alice", PASSWORD)
        assert rehashed is not None and "t=2" in rehashed.password_hash


# session events ----------------------------------------------------------------------------


def events_logged(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "webapp.events"]


def test_session_events_are_logged_as_json_without_secrets(app, client, auth, user, caplog, clock):
    caplog.set_level(logging.INFO, logger="webapp.events")
    auth.login("alice", "wrong password!")
    auth.login()
    sid = session_cookie(client)
    auth.logout()
    AuthActions(client).login()
    clock.advance(app.config["IDLE_TIMEOUT"])
    client.get("/session")
    logged = events_logged(caplog)
    kinds = [e["event"] for e in logged]
    assert kinds == ["sign_in_failed", "sign_in", "sign_out", "sign_in", "session_expired"]
    for event in logged:
        assert {"user_id", "session", "ip", "user_agent"} <= event.keys()
    text = caplog.text
    assert PASSWORD not in text and "wrong password!" not in text and sid not in text
    assert logged[1]["session"] == logged[2]["session"] and len(logged[1]["session"]) == 12


def test_lockout_revocation_and_password_change_are_logged(app, client, auth, user, caplog):
    caplog.set_level(logging.INFO, logger="webapp.events")
    second = app.test_client()
    for _ in range(6):
        AuthActions(second).login("alice", "wrong password!")
    kinds = [e["event"] for e in events_logged(caplog)]
    assert "sign_in_locked" in kinds
    caplog.clear()
    with app.app_context():  # lift the lock for the rest of the story
        from webapp.models import SignInEvent

        get_db().query(SignInEvent).delete()
        get_db().commit()
    auth.login()
    AuthActions(second).login()
    client.post(
        "/account/sessions/revoke-others",
        data={"csrf_token": csrf_token(client), "password": PASSWORD},
    )
    new = "another fine passphrase"
    client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(client),
            "current_password": PASSWORD,
            "new_password": new,
            "confirm": new,
        },
    )
    kinds = [e["event"] for e in events_logged(caplog)]
    assert "sessions_revoked" in kinds and "password_changed" in kinds


def test_sign_out_clears_site_data(client, auth, user):
    auth.login()
    response = auth.logout()
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'


def test_argon2_runs_on_one_low_priority_thread():
    """Sign-ins use the CPU polls leave: hashing runs niced, on a single thread."""
    import os
    import threading

    from webapp.passwords import HASHING_NICENESS, on_hashing_thread

    def where() -> tuple[str, int]:
        me = threading.current_thread().name
        return me, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    name, nice = on_hashing_thread(where)
    assert name.startswith("argon2")
    assert nice >= HASHING_NICENESS > os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert on_hashing_thread(where)[0] == name  # the same single thread
