"""Fixtures: an app per test in its own instance folder, a movable clock, and sign-in helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from helpers import FAST_ARGON2, PASSWORD, AuthActions, FakeClock

from webapp import create_app
from webapp.accounts import create_user
from webapp.db import get_db


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app_config(tmp_path: Path, clock: FakeClock) -> dict[str, object]:
    return {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECURE_COOKIES": False,
        "CLOCK": clock,
        **FAST_ARGON2,
    }


@pytest.fixture
def app(app_config: dict[str, object]) -> Iterator[Flask]:
    app = create_app(app_config)
    yield app
    app.extensions["webapp.db"].kw["bind"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def user(app: Flask):  # type: ignore[no-untyped-def]
    with app.app_context():
        return create_user(get_db(), "alice", PASSWORD, "Alice Example", "alice@example.com")


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)
