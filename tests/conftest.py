"""Fixtures: an app per test in its own instance folder and database, a movable clock, and
sign-in helpers. Every test that takes `app` (or `app_config`) runs twice: on the embedded
configuration (files + SQLite) and the distributed one (Redis + PostgreSQL, real servers on
free loopback ports); tests marked `filesystem_only` check what only the file store has.
Property-based tests run on a hypothesis profile (below): reproducible unless asked to fuzz."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from helpers import FAST_ARGON2, PASSWORD, AuthActions, FakeClock, count_store_writes
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase
from redis import Redis
from support.postgres import create_database, postgres_server
from support.redis_server import RedisServer, redis_server

import webapp.db
import webapp.mail
from webapp import create_app
from webapp.db import get_db
from webapp.users import create_user

BACKENDS = ("embedded", "distributed")

# Hypothesis profiles. "ci", the default (and the only one when CI is set): the same examples
# on every run and every machine, and no example database; a failure prints the blob that
# replays it (@reproduce_failure). "fuzz" (HYPOTHESIS_PROFILE=fuzz, `make fuzz`): random
# seeds, many more examples, and every failing example saved in .hypothesis/examples/
# (gitignored, like hypothesis's other caches there), replayed first by the next run.
settings.register_profile(
    "ci", derandomize=True, database=None, print_blob=True, max_examples=60, deadline=None
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    database=DirectoryBasedExampleDatabase(
        str(Path(__file__).resolve().parent.parent / ".hypothesis" / "examples")
    ),
    print_blob=True,
    max_examples=1000,
    deadline=None,
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        only_files = metafunc.definition.get_closest_marker("filesystem_only")
        backends = ("embedded",) if only_files else BACKENDS
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(autouse=True)
def _dispose_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every database pool a test opened (PostgreSQL counts connections)."""
    engines: list[Any] = []
    make_engine = webapp.db.make_engine

    def tracked(url: str) -> Any:
        engines.append(make_engine(url))
        return engines[-1]

    monkeypatch.setattr(webapp.db, "make_engine", tracked)
    yield
    # Mail work still running in the background (webapp.mail.later) may hold a connection.
    if webapp.mail._executor is not None:
        webapp.mail._executor[1].submit(lambda: None).result()
    for engine in engines:
        engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app_config(
    tmp_path: Path, clock: FakeClock, backend: str, request: pytest.FixtureRequest
) -> Iterator[dict[str, object]]:
    config: dict[str, object] = {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECURE_COOKIES": False,
        "CLOCK": clock,
        **FAST_ARGON2,
    }
    if backend == "embedded":
        yield config
        return
    redis: RedisServer = request.getfixturevalue("redis")
    config.update(
        SESSION_BACKEND="redis",
        REDIS_URL=redis.url,
        DATABASE_URL=create_database(request.getfixturevalue("postgres")),
    )
    yield config
    Redis.from_url(redis.url).flushall()


@pytest.fixture
def app(app_config: dict[str, object]) -> Flask:
    app = create_app(app_config)
    count_store_writes(app)
    return app


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
