"""Two hosts behind a load balancer: two gunicorns on their own ports and instance folders,
sharing one Redis, one PostgreSQL and one secret key. What one host does to a session, the
other sees at its next request; sign-in throttling counts across both; and with Redis or
PostgreSQL stopped, both answer a clear 503, keep their workers, and recover by themselves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from conftest import _create_user, _environment, gunicorn
from live_client import Client, change_password, signed_in
from support.postgres import PostgresServer, create_database, running_postgres
from support.redis_server import RedisServer

if TYPE_CHECKING:
    from conftest import LiveServer

pytestmark = pytest.mark.live

SECRET_KEY = "two-hosts-share-this-key-" + "x" * 24


@pytest.fixture(scope="module")
def redis_for_hosts() -> Iterator[RedisServer]:
    """Redis of their own: the outage test stops and restarts it."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres_for_hosts() -> Iterator[PostgresServer]:
    """PostgreSQL of their own: the outage test stops and restarts it."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def hosts(
    redis_for_hosts: RedisServer,
    postgres_for_hosts: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, LiveServer]]:
    database = create_database(postgres_for_hosts.url)
    shared = {
        "WEBAPP_SESSION_BACKEND": "redis",
        "WEBAPP_REDIS_URL": redis_for_hosts.url,
        "WEBAPP_DATABASE_URL": database,
        "WEBAPP_SECRET_KEY": SECRET_KEY,
    }
    folders = [tmp_path_factory.mktemp(f"host{n}") for n in (1, 2)]
    envs = [{**_environment(folder / "instance", 1), **shared} for folder in folders]
    _create_user(envs[0])
    with gunicorn(envs[0], folders[0], 1) as first, gunicorn(envs[1], folders[1], 1) as second:
        yield first, second


def on(server: LiveServer, client: Client) -> Client:
    """The same browser (cookie jar) talking to another host."""
    moved = Client(server)
    moved.jar = client.jar
    moved.opener = client.opener
    return moved


def wait_healthy(server: LiveServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Client(server).request("/healthz").status == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"{server.base_url} did not recover\n{server.output()}")


def test_a_session_made_on_one_host_is_valid_on_the_other(hosts):
    first, second = hosts
    browser = signed_in(first)
    assert on(second, browser).username() == first.username
    assert on(second, browser).request("/profile").status == 200


def test_sign_out_on_one_host_is_seen_by_the_other(hosts):
    first, second = hosts
    browser = signed_in(first)
    elsewhere = on(second, browser)
    assert elsewhere.username() == first.username
    token = browser.csrf("/")
    assert browser.request("/logout", data={"csrf_token": token}).status == 303
    assert elsewhere.state() == {}


def test_revocation_on_one_host_ends_a_session_polling_the_other(hosts):
    first, second = hosts
    phone = on(second, signed_in(second))
    laptop = signed_in(first)
    assert phone.username() == first.username
    reply = laptop.request(
        "/account/sessions/revoke-others",
        data={"password": first.password, "csrf_token": laptop.csrf("/account/sessions")},
    )
    assert reply.status == 303
    assert phone.state() == {}
    assert laptop.username() == first.username


def test_password_change_on_one_host_ends_sessions_on_the_other(hosts):
    first, second = hosts
    other = signed_in(second)
    browser = signed_in(first)
    new = "a new shared passphrase!"
    assert change_password(browser, first.password, new).status == 303
    try:
        assert other.state() == {}
        assert on(second, browser).username() == first.username
    finally:
        assert change_password(browser, new, first.password).status == 303


def test_throttling_counts_across_both_hosts(hosts):
    first, second = hosts
    username = "nobody-on-either-host"
    for n in range(5):
        client = Client(first if n % 2 else second)
        data = {
            "username": username,
            "password": "wrong password!",
            "csrf_token": client.csrf("/login"),
        }
        assert client.request("/login", data=data).status == 401
    for server in hosts:
        client = Client(server)
        data = {
            "username": username,
            "password": "wrong password!",
            "csrf_token": client.csrf("/login"),
        }
        reply = client.request("/login", data=data)
        assert reply.status == 429 and reply.headers["Retry-After"]


def test_redis_outage_is_a_503_and_service_recovers(hosts, redis_for_hosts):
    first, second = hosts
    browser = signed_in(first)
    workers = first.worker_pids() | second.worker_pids()
    redis_for_hosts.stop()
    try:
        for server in hosts:
            health = Client(server).request("/healthz")
            assert health.status == 503
            assert health.json()["checks"]["session_store"].startswith("unavailable")
            assert health.json()["checks"]["database"] == "ok"
        page = browser.request("/profile")
        assert page.status == 503 and "session store" in page.text
        poll = browser.request("/session")
        assert poll.status == 503
    finally:
        redis_for_hosts.start()
    for server in hosts:
        wait_healthy(server)
    assert first.worker_pids() | second.worker_pids() == workers  # no worker died
    assert signed_in(second).username() == first.username  # sign-in works again


def test_postgres_outage_is_a_503_and_service_recovers(hosts, postgres_for_hosts):
    first, second = hosts
    browser = signed_in(first)
    workers = first.worker_pids() | second.worker_pids()
    postgres_for_hosts.stop()
    try:
        for server in hosts:
            health = Client(server).request("/healthz")
            assert health.status == 503
            assert health.json()["checks"]["database"].startswith("unavailable")
            assert health.json()["checks"]["session_store"] == "ok"
        stranger = Client(first)
        data = {"username": first.username, "password": first.password}
        reply = stranger.request("/login", data={**data, "csrf_token": stranger.csrf("/login")})
        assert reply.status == 503 and "database" in reply.text
        assert browser.request("/account/sessions").status == 503
    finally:
        postgres_for_hosts.start()
    for server in hosts:
        wait_healthy(server)
    assert first.worker_pids() | second.worker_pids() == workers  # no worker died
    assert signed_in(second).username() == first.username  # pooled connections recovered
