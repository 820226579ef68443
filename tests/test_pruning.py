"""Pruning expired sessions: through the index, by sweeping the store, and in the background."""

from __future__ import annotations

import logging
import runpy
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from helpers import AuthActions, store_files

from webapp import create_app
from webapp.config import ConfigError
from webapp.db import get_db
from webapp.models import RememberToken, UserSession
from webapp.sessions import pruning

ROOT = Path(__file__).resolve().parents[1]


def sign_in_browsers(app, count):
    browsers = []
    for _ in range(count):
        browser = app.test_client()
        AuthActions(browser).login()
        browsers.append(browser)
    return browsers


def index_rows(app) -> int:
    with app.app_context():
        return get_db().query(UserSession).count()


def test_prune_deletes_expired_sessions_and_their_rows_only(app, runner, user, clock):
    sign_in_browsers(app, 3)
    clock.advance(app.config["IDLE_TIMEOUT"])
    live = sign_in_browsers(app, 2)
    assert len(store_files(app)) == 5 and index_rows(app) == 5
    result = runner.invoke(args=["sessions", "prune", "--no-sweep"])
    assert result.exit_code == 0
    assert "Pruned 3 expired signed-in session(s)" in result.output
    assert len(store_files(app)) == 2 and index_rows(app) == 2
    assert all(browser.get("/session").json != {} for browser in live)


def test_prune_finds_sessions_past_the_absolute_timeout(app, runner, user, clock):
    browsers = sign_in_browsers(app, 2)
    for _ in range(app.config["ABSOLUTE_TIMEOUT"] // 1000):
        clock.advance(1000)
        browsers[0].get("/profile")  # active all along...
    clock.advance(app.config["ABSOLUTE_TIMEOUT"] % 1000)  # ...until its absolute end
    with app.app_context():
        assert pruning.prune_index() == 2


def test_prune_deletes_expired_remember_tokens_only(app, runner, user, clock):
    """Expired remember-me tokens (current or replaced) go; a live chain stays whole, and its
    device still signs itself back in."""
    for _ in range(2):
        AuthActions(app.test_client()).login(remember=True)
    clock.advance(app.config["REMEMBER_DURATION"] - 60)
    device = app.test_client()
    AuthActions(device).login(remember=True)
    clock.advance(app.config["IDLE_TIMEOUT"] + 1)
    assert device.get("/session").json == {}
    assert device.get("/profile").status_code == 200  # restored: its token replaced by a new one
    clock.advance(61)  # the first two chains are past their expiry
    with app.app_context():
        assert get_db().query(RememberToken).count() == 4
    result = runner.invoke(args=["sessions", "prune", "--no-sweep"])
    assert result.exit_code == 0, result.output
    assert "2 expired remember-me token(s)" in result.output
    with app.app_context():
        assert get_db().query(RememberToken).count() == 2  # the live chain's current and replaced
    clock.advance(app.config["IDLE_TIMEOUT"] + 1)
    assert device.get("/session").json == {}
    assert device.get("/profile").status_code == 200


def test_prune_works_in_bounded_batches(app, user, clock, monkeypatch):
    monkeypatch.setattr(pruning, "BATCH", 2)
    sign_in_browsers(app, 5)
    clock.advance(app.config["IDLE_TIMEOUT"])
    with app.app_context():
        assert pruning.prune_index(limit=3) == 3
        assert pruning.prune_index() == 2


@pytest.mark.filesystem_only
def test_sweep_deletes_expired_store_files_the_index_does_not_know(app, client, user):
    app.session_interface.cache.set("session:orphan", {"_flashes": []}, timeout=60)
    (name,) = store_files(app)  # e.g. an anonymous session that held a flash message
    path = Path(app.instance_path, "sessions", name)
    path.write_bytes(struct.pack("I", 1) + path.read_bytes()[4:])  # its expiry: long past
    AuthActions(app.test_client()).login()  # a live one
    assert pruning.sweep_store(app) == 1
    assert name not in store_files(app) and len(store_files(app)) == 1


def test_background_pruning_runs_without_a_request(app, user, clock, monkeypatch):
    sign_in_browsers(app, 2)
    clock.advance(app.config["IDLE_TIMEOUT"])
    waits: list[float] = []
    monkeypatch.setattr(pruning.time, "sleep", waits.append)
    pruning._run_forever(app, runs=1)
    assert store_files(app) == {} and index_rows(app) == 0
    assert waits == [60]  # WEBAPP_PRUNE_INTERVAL's default


def test_the_prune_interval_is_a_setting(app_config):
    assert create_app({**app_config, "PRUNE_INTERVAL": 5}).config["PRUNE_INTERVAL"] == 5
    with pytest.raises(ConfigError, match="WEBAPP_PRUNE_INTERVAL must be a positive"):
        create_app({**app_config, "PRUNE_INTERVAL": 0})


@pytest.fixture
def started(monkeypatch) -> list[tuple[Any, ...]]:
    """The pruning threads started (their arguments), none really run."""
    threads: list[tuple[Any, ...]] = []

    class Thread:
        def __init__(self, target: Any, args: tuple[Any, ...], daemon: bool, name: str) -> None:
            assert target is pruning._run_forever and daemon and name == "prune"
            self.args = args

        def start(self) -> None:
            threads.append(self.args)

    monkeypatch.setattr(pruning.threading, "Thread", Thread)
    return threads


def test_gunicorn_starts_background_pruning_in_every_worker(app, started):
    """gunicorn.conf.py's post_worker_init hands the worker's app to start_background (the
    live test, tests/live/test_gunicorn_housekeeping.py, shows it running)."""
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    hooks["post_worker_init"](SimpleNamespace(wsgi=app))
    assert started == [(app,)]


def test_background_pruning_finds_the_flask_app_behind_the_fast_path(app, started, caplog):
    pruning.start_background(app.wsgi_app)  # the poll fast path, holding the app
    assert started == [(app,)]
    caplog.set_level(logging.INFO, logger="webapp.sessions.pruning")
    pruning.start_background(object())
    pruning.start_background(Flask("another_app"))  # e.g. the bench's bare Flask app
    assert started == [(app,)]
    assert caplog.text.count("background pruning not started") == 2


@pytest.mark.filesystem_only
def test_a_sweep_that_hits_its_limit_goes_on_at_the_next_run(app, monkeypatch):
    """Many expired anonymous entries (baskets) are not left for the hourly sweep."""
    for number in range(5):
        app.session_interface.cache.set(f"session:basket{number}", {"basket": {}}, timeout=60)
    for name in store_files(app):
        path = Path(app.instance_path, "sessions", name)
        path.write_bytes(struct.pack("I", 1) + path.read_bytes()[4:])  # expired
    monkeypatch.setattr(pruning, "BACKGROUND_LIMIT", 2)
    monkeypatch.setattr(pruning.time, "sleep", lambda seconds: None)
    pruning._run_forever(app, runs=3)  # runs 2 and 3 are not hourly sweeps
    assert store_files(app) == {}
