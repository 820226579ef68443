"""The session store reads only what webapp wrote, and only webapp can write it.

A damaged or foreign entry (truncated, garbage, msgpack without a MAC, a MAC made with another
key, another session's file copied under this one's name, a pickle, even one that would run
code) is no session: logged by file name, deleted, never a 5xx and never decoded, on the poll
fast path as on the Flask routes. Redis holds the same sealed entries: one planted under a
session id of the planter's choosing signs nobody in. At start the app refuses a store folder
or file that another user owns or can reach, with a message saying how to fix it."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from flask.testing import FlaskClient
from helpers import FAST_ARGON2, PASSWORD, AuthActions, FakeClock, session_cookie
from redis import Redis
from support.postgres import create_database
from support.redis_server import RedisServer
from werkzeug.test import EnvironBuilder

from webapp import create_app
from webapp.db import get_db
from webapp.instance import InstanceError
from webapp.sessions.store import (
    HEADER_BYTES,
    MAX_ENTRY_BYTES,
    DamagedEntry,
    SealedEntries,
    sid_hash,
)
from webapp.users import create_user
from webapp.widget.fast_path import PollFastPath

pytestmark = pytest.mark.filesystem_only

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HTMX = {"HX-Request": "true"}
NOBODY = 65534


@dataclass
class Entry:
    """A signed-in client's store entry, as webapp wrote it."""

    client: FlaskClient
    sid: str
    key: str
    path: Path
    data: bytes
    session: dict[str, Any]
    marker: Path  # the file a malicious pickle would create
    other: bytes  # bob's entry, as webapp wrote it under bob's key


class CreatesAFile:
    """Unpickling this calls open(path, "w"): proof that the store never unpickles."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def sign_in(app, username: str) -> FlaskClient:
    client = app.test_client()
    assert AuthActions(client).login(username).status_code == 303
    return client


@pytest.fixture
def entry(app, user, tmp_path) -> Entry:
    with app.app_context():
        create_user(get_db(), "bob", PASSWORD, "Bob", "bob@example.com")
    client = sign_in(app, "alice")
    sid = session_cookie(client)
    interface = app.session_interface
    key = interface._get_store_id(sid)
    path = Path(interface.cache._get_filename(key))
    bob = sign_in(app, "bob")
    other = Path(interface.cache._get_filename(interface._get_store_id(session_cookie(bob))))
    session = interface.cache.get(key)
    assert session["_user_id"] == "1"
    marker = tmp_path / "pwned"
    return Entry(client, sid, key, path, path.read_bytes(), session, marker, other.read_bytes())


def header(entry: Entry) -> bytes:
    return entry.data[:HEADER_BYTES]


#: Each damage: what is written over alice's entry.
DAMAGES: dict[str, Callable[[Entry], bytes]] = {
    "zero-length": lambda e: b"",
    "truncated-in-header": lambda e: e.data[:3],
    "truncated-in-mac": lambda e: e.data[:20],
    "truncated-payload": lambda e: e.data[:-7],
    "garbage-from-byte-0": lambda e: b"\xff\xfe\x80garbage" * 10,
    "garbage-after-header": lambda e: header(e) + bytes(range(256)) * 2,
    "msgpack-without-mac": lambda e: header(e) + msgspec.msgpack.encode(e.session),
    "mac-with-another-key": lambda e: (
        header(e) + SealedEntries("another key").seal(e.key, e.session)
    ),
    "another-sessions-file": lambda e: e.other,
    "pickle-from-an-earlier-webapp": lambda e: header(e) + pickle.dumps(e.session),
    "pickle-that-would-run-code": lambda e: header(e) + pickle.dumps(CreatesAFile(e.marker)),
    "larger-than-any-session": lambda e: e.data + b"\0" * MAX_ENTRY_BYTES,
}


def via_route(app, client: FlaskClient, **kwargs: Any):
    """GET /session answered by the Flask route, with the fast path out of the way."""
    fast = app.wsgi_app
    app.wsgi_app = fast.wsgi_app
    try:
        return client.get("/session", **kwargs)
    finally:
        app.wsgi_app = fast


#: Where a damaged entry is read, and what a signed-out caller gets there.
def fast_path_itself(app, e: Entry) -> None:
    """The fast path's own read: it must not answer from the entry, only hand over."""
    fast = app.wsgi_app
    assert isinstance(fast, PollFastPath)
    cookie = f"{app.config['SESSION_COOKIE_NAME']}={e.sid}"
    environ = EnvironBuilder(path="/session", headers={"Cookie": cookie}).get_environ()
    assert fast.answer(environ) is None


def poll_json(app, e: Entry) -> None:
    response = e.client.get("/session")
    assert response.status_code == 200 and response.json == {}


def poll_widget(app, e: Entry) -> None:
    response = e.client.get("/session", headers=HTMX)
    assert response.status_code == 200
    assert 'data-session-status="unauthenticated"' in response.text


def route_json(app, e: Entry) -> None:
    response = via_route(app, e.client)
    assert response.status_code == 200 and response.json == {}


def api(app, e: Entry) -> None:
    assert e.client.get("/api/hello").status_code == 401


def protected_page(app, e: Entry) -> None:
    response = e.client.get("/profile")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def public_page(app, e: Entry) -> None:
    response = e.client.get("/")
    assert response.status_code == 200 and "Welcome, Alice" not in response.text


READERS = [fast_path_itself, poll_json, poll_widget, route_json, api, protected_page, public_page]


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_or_foreign_entry_is_no_session(app, entry, damage, caplog):
    caplog.set_level(logging.WARNING, logger="webapp.sessions.files")
    for read in READERS:
        entry.path.write_bytes(damage(entry))
        caplog.clear()
        entry.client.set_cookie(app.config["SESSION_COOKIE_NAME"], entry.sid)  # if deleted
        read(app, entry)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(entry.path.name in w and "ignored and deleted" in w for w in warnings), (
            read.__name__,
            warnings,
        )
        assert not entry.path.exists(), read.__name__
        assert entry.session["csrf_token"] not in caplog.text  # the name, never the content
        assert entry.sid not in caplog.text
    assert not entry.marker.exists()


def test_another_sessions_file_does_not_sign_in_as_its_owner(app, entry):
    entry.path.write_bytes(entry.other)
    assert entry.client.get("/session").json == {}


def test_a_signed_entry_that_is_not_a_session_is_no_session(app, entry, caplog):
    """Only webapp could write it (a bug, not an attacker): still no session, no 5xx."""
    sealer = app.session_interface.cache.sealer
    for sealed in (
        sealer.seal(entry.key, ["not", "a", "dict"]),
        sealer.mac(entry.key, b"\xc1") + b"\xc1",  # 0xc1: never valid msgpack
    ):
        for target, answer in (("/session", 200), ("/api/hello", 401)):
            entry.path.write_bytes(header(entry) + sealed)
            entry.client.set_cookie(app.config["SESSION_COOKIE_NAME"], entry.sid)
            assert entry.client.get(target).status_code == answer
    assert "not msgpack" in caplog.text and "of type list ignored" in caplog.text


def test_cachelibs_own_paths_cannot_pickle_either(app, entry):
    """cachelib's serializer is replaced: load() refuses, dump() writes only sealed bytes."""
    serializer = app.session_interface.cache.serializer
    entry.path.write_bytes(header(entry) + pickle.dumps(CreatesAFile(entry.marker)))
    with open(entry.path, "rb") as file:
        file.seek(HEADER_BYTES)
        with pytest.raises(DamagedEntry, match="without its store key"):
            serializer.load(file)
    with open(entry.path, "wb") as file, pytest.raises(TypeError, match="only sealed entries"):
        serializer.dump({"_user_id": "1"}, file)
    assert not entry.marker.exists()


def test_sessions_survive_a_restart(app_config, app, entry):
    """The MAC key comes from the secret key, which every start reads back."""
    restarted = create_app(app_config)
    client = restarted.test_client()
    client.set_cookie("session", session_cookie(entry.client))
    assert client.get("/session").json["user"]["username"] == "alice"


def test_another_secret_key_signs_everyone_out(app_config, app, entry, caplog):
    restarted = create_app({**app_config, "SECRET_KEY": "a different secret key" * 2})
    client = restarted.test_client()
    client.set_cookie("session", session_cookie(entry.client))
    assert client.get("/session").json == {}
    assert "its MAC does not match" in caplog.text


# Redis: the same sealed entries ----------------------------------------------------------------


@pytest.fixture
def redis_app(tmp_path, clock: FakeClock, redis: RedisServer, postgres: str):
    """The distributed configuration (this module's other tests are about files only)."""
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECURE_COOKIES": False,
            "CLOCK": clock,
            "SESSION_BACKEND": "redis",
            "REDIS_URL": redis.url,
            "DATABASE_URL": create_database(postgres),
            **FAST_ARGON2,
        }
    )
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD, "Alice Example", "alice@example.com")
    yield app
    Redis.from_url(redis.url).flushall()


#: A session id the planter chose; no sign-in ever gave it out.
CHOSEN_SID = "chosen-by-whoever-can-write-to-redis"
CHOSEN_KEY = "session:" + sid_hash(CHOSEN_SID)

#: Each plant: what is written to Redis under CHOSEN_KEY, from alice's real key and session.
PLANTS: dict[str, Callable[[Any, str, dict[str, Any]], bytes]] = {
    "unsealed-msgpack": lambda app, key, data: msgspec.msgpack.encode(data),
    "sealed-for-another-key": lambda app, key, data: app.session_interface.sealer.seal(key, data),
    "sealed-with-another-secret": lambda app, key, data: SealedEntries("another secret key").seal(
        CHOSEN_KEY, data
    ),
    "pickle": lambda app, key, data: pickle.dumps(data),
}


def test_redis_entries_are_sealed_and_a_real_sign_in_works(redis_app):
    client = sign_in(redis_app, "alice")
    interface = redis_app.session_interface
    key = interface._get_store_id(session_cookie(client))
    raw = interface.client.get(key)
    assert interface.sealer.opened(key, raw)["_user_id"] == "1"
    with pytest.raises(DamagedEntry, match="MAC does not match"):
        SealedEntries("another secret key").opened(key, raw)
    assert client.get("/session").json["user"]["username"] == "alice"
    assert via_route(redis_app, client).json["user"]["username"] == "alice"
    assert client.get("/api/hello").status_code == 200


@pytest.mark.parametrize("plant", PLANTS.values(), ids=PLANTS.keys())
def test_an_entry_planted_in_redis_signs_nobody_in(redis_app, plant, caplog):
    """Whoever can write to Redis picks a session id, writes a fresh signed-in session for
    alice under its key and sends the id as a cookie: no session, on the fast path as on the
    Flask routes; the entry is logged by its key (a hash) and deleted, never a 5xx."""
    caplog.set_level(logging.WARNING, logger="webapp.sessions.redis_store")
    real = sign_in(redis_app, "alice")
    interface = redis_app.session_interface
    key = interface._get_store_id(session_cookie(real))
    session = interface._retrieve_session_data(key)
    fast = redis_app.wsgi_app
    assert isinstance(fast, PollFastPath)
    cookie = f"{redis_app.config['SESSION_COOKIE_NAME']}={CHOSEN_SID}"
    reads = {
        "fast path itself": lambda c: (
            fast.answer(EnvironBuilder(path="/session", headers={"Cookie": cookie}).get_environ())
            is None
        ),
        "poll (json)": lambda c: c.get("/session").json == {},
        "poll (widget)": lambda c: (
            'data-session-status="unauthenticated"' in c.get("/session", headers=HTMX).text
        ),
        "route": lambda c: via_route(redis_app, c).json == {},
        "api": lambda c: c.get("/api/hello").status_code == 401,
        "page": lambda c: c.get("/profile").status_code == 302,
    }
    for name, read in reads.items():
        interface.client.set(CHOSEN_KEY, plant(redis_app, key, session))
        caplog.clear()
        planter = redis_app.test_client()
        planter.set_cookie(redis_app.config["SESSION_COOKIE_NAME"], CHOSEN_SID)
        assert read(planter), name
        assert interface.client.get(CHOSEN_KEY) is None, name
        assert f"session entry {CHOSEN_KEY} ignored and deleted" in caplog.text, name
        assert CHOSEN_SID not in caplog.text and session["csrf_token"] not in caplog.text
    assert real.get("/session").json["user"]["username"] == "alice"


# the start-up check ---------------------------------------------------------------------------


def store(app_config: dict[str, Any]) -> Path:
    return Path(str(app_config["INSTANCE_PATH"])) / "sessions"


def refused(app_config: dict[str, Any]) -> str:
    with pytest.raises(InstanceError) as error:
        create_app(app_config)
    return error.value.format_message()


def test_a_new_store_is_created_private_and_an_existing_private_one_is_accepted(
    app_config, app, entry
):
    assert os.stat(store(app_config)).st_mode & 0o777 == 0o700
    create_app(app_config)  # a store holding sessions, all 0600: accepted


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701], ids=oct)
def test_a_store_folder_others_can_reach_refuses_to_start(app_config, app, mode):
    folder = store(app_config)
    folder.chmod(mode)
    message = refused(app_config)
    assert f"session store {folder} has mode {mode:04o}" in message
    assert f"run: chmod 700 {folder}" in message


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640, 0o660], ids=oct)
def test_a_store_file_others_can_read_refuses_to_start(app_config, app, entry, mode):
    entry.path.chmod(mode)
    message = refused(app_config)
    assert f"holds files other users can read or write: 1 (e.g. {entry.path})" in message
    assert f"run: find {store(app_config)} -type f -exec chmod 600 {{}} +" in message


def test_a_store_file_owned_by_another_user_refuses_to_start(app_config, app, entry):
    os.chown(entry.path, NOBODY, -1)
    message = refused(app_config)
    assert f"not owned by webapp's user (uid {os.geteuid()}): 1 (e.g. {entry.path})" in message
    assert f"as root, run: chown -R {os.geteuid()} {store(app_config)}" in message


def test_a_store_folder_owned_by_another_user_refuses_to_start(app_config, app):
    os.chown(store(app_config), NOBODY, -1)
    message = refused(app_config)
    assert f"belongs to uid {NOBODY}, not to webapp's user (uid {os.geteuid()})" in message
    assert f"chown -R {os.geteuid()} {store(app_config)}" in message


@pytest.mark.parametrize("kind", ["symlink", "folder"])
def test_a_store_holding_something_else_refuses_to_start(app_config, app, kind):
    planted = store(app_config) / "planted"
    if kind == "symlink":
        planted.symlink_to("/etc/passwd")
    else:
        planted.mkdir(mode=0o700)
    assert f"not regular files: 1 (e.g. {planted})" in refused(app_config)


def environment(instance: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("WEBAPP_")}
    env.update(WEBAPP_INSTANCE_PATH=str(instance), WEBAPP_SECRET_KEY="k" * 64)
    return env


@pytest.fixture
def open_store(tmp_path) -> Path:
    """An instance folder whose session store is 0755."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    (instance / "sessions").mkdir()
    (instance / "sessions").chmod(0o755)
    return instance


def test_flask_commands_refuse_an_open_store_without_a_traceback(open_store):
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapp", "users", "list"],
        cwd=ROOT,
        env={**environment(open_store), "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"Error: session store {open_store / 'sessions'} has mode 0755" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_refuses_an_open_store(open_store):
    """gunicorn stops with the message alone: wsgi.py hands the refusal to gunicorn as an
    AppImportError ("App failed to load", exit 4), which logs no traceback."""
    result = subprocess.run(
        [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--no-control-socket",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=environment(open_store),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert f"session store {open_store / 'sessions'} has mode 0755" in output
    assert f"run: chmod 700 {open_store / 'sessions'}" in output
    assert "App failed to load" in output
    assert "Traceback" not in output
