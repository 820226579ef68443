"""Crashes under load, on a real gunicorn: kill -9 a worker in the middle of writes, again and
again, then kill -9 the whole server and start a new one on the same instance folder, store
and database.

Several browsers, each its own user, sign in, change their profile, keep their session alive
and sign out, checking every answer. The master must replace every killed worker and service
must go on; the only failures a browser may see are the dropped connections of the requests
the killed process was serving (counted and printed, never a 5xx); and afterwards every
session cookie any browser holds is either valid for its own user or cleanly absent, never
another user's, never damaged. A browser whose last answer arrived must find exactly that
state, after a restart too: sessions and sign-ups answered as done survive the crash.
Both configurations: files + SQLite, and Redis + PostgreSQL.
"""

from __future__ import annotations

import collections
import http.client
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import BIN, ROOT, _create_user, _environment, gunicorn
from live_client import SESSION, Client, Reply, csrf_tokens
from support.postgres import create_database, running_postgres
from support.redis_server import RedisServer

if TYPE_CHECKING:
    from conftest import LiveServer

pytestmark = pytest.mark.live

VISITORS = 8
KILLS = 5
PASSWORD = "crash test passphrase"
#: How long load runs before each kill (seconds, drawn at random) and after the last one.
LOAD_BEFORE_KILL = (0.4, 1.2)
REPLACE_TIMEOUT = 30.0
#: cachelib's temporary files: written aside, then renamed over the entry.
TEMPORARY_SUFFIX = ".__wz_cache"
#: A cookie a browser no longer uses, replayed at the end; the newest are kept.
RETIRED_KEPT = 20


# --- the server's processes ---------------------------------------------------------------


def children(pid: int) -> set[int]:
    """Live child processes of `pid`, from /proc (a killed child that is not yet reaped, a
    zombie, is not live)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def master_of(server: LiveServer) -> int:
    """gunicorn's master: the parent of a booted worker."""
    for worker in server.worker_pids():
        try:
            stat = Path(f"/proc/{worker}/stat").read_text()
        except OSError:
            continue
        return int(stat[stat.rindex(")") + 2 :].split()[1])
    pytest.fail(f"no live gunicorn worker\n{server.output()}")


def serving(worker: int) -> bool:
    """Whether a worker has loaded the app: post_worker_init has started its pruning thread,
    so it has more than its one boot thread (a worker still importing accepts nothing)."""
    try:
        return len(os.listdir(f"/proc/{worker}/task")) > 1
    except OSError:
        return False


def wait_for_replacement(master: int, before: set[int], victim: int, workers: int) -> set[int]:
    """The workers once the master has replaced `victim` with a new process that serves."""
    deadline = time.monotonic() + REPLACE_TIMEOUT
    while time.monotonic() < deadline:
        now = children(master)
        if victim not in now and len(now) == workers and now - before and all(map(serving, now)):
            return now
        time.sleep(0.05)
    pytest.fail(f"the master did not replace worker {victim} within {REPLACE_TIMEOUT} s")


def answers_health(server: LiveServer) -> bool:
    reply = Client(server).request("/healthz")
    return reply.status == 200 and reply.json()["status"] == "ok"


ERROR_TEXT = re.compile(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<')


def gist(page: str) -> str:
    """What an error page or form says went wrong."""
    return "; ".join(ERROR_TEXT.findall(page)) or page[:300]


# --- browsers -----------------------------------------------------------------------------


@dataclass
class Tally:
    """What every browser saw, shared between their threads."""

    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def drop(self, error: BaseException) -> None:
        reason = getattr(error, "reason", None)
        with self.lock:
            self.dropped[type(reason if isinstance(reason, BaseException) else error).__name__] += 1

    def answer(self, status: int) -> None:
        with self.lock:
            self.answers[f"{status // 100}xx"] += 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)


class Visitor:
    """One browser of one user. Tracks the state its last answered request left it in; a
    dropped request makes that state uncertain (both outcomes are allowed) until the next
    /session read settles it."""

    def __init__(self, server: LiveServer, tally: Tally, number: int) -> None:
        self.client = Client(server)
        self.tally = tally
        self.username = f"crash-{number}-{random.randrange(1 << 30):x}"
        self.user_id: str | None = None
        self.names = {f"Visitor {number}"}  # the names /session may show
        self.signed_in = False
        self.uncertain = False
        self.token = ""
        self.changes = 0
        #: Cookies this browser stopped using: (value, whether their end was answered).
        self.retired: collections.deque[tuple[str, bool]] = collections.deque(maxlen=RETIRED_KEPT)

    def call(self, path: str, data: dict[str, str] | None = None, *expected: int) -> Reply | None:
        try:
            reply = self.client.request(path, data=data)
        except (OSError, http.client.HTTPException) as error:
            self.tally.drop(error)
            self.uncertain = True
            return None
        self.tally.answer(reply.status)
        if reply.status not in expected:
            self.tally.fail(f"{self.username} {path}: {reply.status} {gist(reply.text)}")
            self.uncertain = True
            return None
        return reply

    def check(self, reply: Reply, where: str) -> dict[str, Any] | None:
        """The /session user, after checking it is this browser's own (or nobody)."""
        user = reply.json().get("user")
        if user is not None and (
            user["username"] != self.username
            or (self.user_id and user["id"] != self.user_id)
            or user["name"] not in self.names
        ):
            self.tally.fail(f"{self.username} {where}: /session shows {user}, names {self.names}")
        return user

    def settle(self, where: str = "resync") -> None:
        """Read /session; with a known state it must match, an uncertain one it settles."""
        reply = self.call("/session", None, 200)
        if reply is None:
            time.sleep(0.05)
            return
        user = self.check(reply, where)
        if not self.uncertain and (user is not None) != self.signed_in:
            self.tally.fail(f"{self.username} {where}: expected signed_in={self.signed_in}")
        settled_in = self.uncertain and user is not None
        self.signed_in, self.uncertain = user is not None, False
        if user is not None:
            self.user_id = user["id"]
        if settled_in:  # e.g. a sign-in whose cookie arrived but not its page
            self.fetch_token()

    def fetch_token(self) -> None:
        """The session's CSRF token, from a protected page (it changes at every sign-in)."""
        page = self.call("/profile", None, 200)
        if page is not None:
            self.token = csrf_tokens(page.text)[1] or ""

    def retire_cookie(self, answered: bool) -> None:
        if cookie := self.client.cookie(SESSION):
            self.retired.append((cookie, answered))

    def sign_up(self) -> None:
        page = self.call("/signup", None, 200)
        assert page is not None, f"sign-up page: {self.tally.failures}"
        data = {
            "username": self.username,
            "name": next(iter(self.names)),
            "email": f"{self.username}@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
            "csrf_token": csrf_tokens(page.text)[1] or "",
        }
        assert self.call("/signup", data, 303) is not None, f"sign-up: {self.tally.failures}"
        self.signed_in = True
        self.settle("after sign-up")
        self.fetch_token()
        assert self.token, f"no CSRF token after sign-up: {self.tally.failures}"

    def sign_in(self) -> None:
        page = self.call("/login", None, 200)
        if page is None:
            return
        data = {"username": self.username, "password": PASSWORD, "next": ""}
        retired = self.client.cookie(SESSION)
        token = csrf_tokens(page.text)[1] or ""
        reply = self.call("/login", {**data, "csrf_token": token}, 303)
        if retired:
            self.retired.append((retired, reply is not None))
        if reply is None:
            return
        self.signed_in = True
        self.settle("after sign-in")
        self.fetch_token()

    def change_profile(self) -> None:
        self.changes += 1
        name = f"{self.username} #{self.changes}"
        data = {"name": name, "email": f"{self.username}@example.com", "csrf_token": self.token}
        self.names.add(name)  # from now on the database may hold it
        if self.call("/account/profile", data, 303) is not None:
            self.names = {name}
            self.settle("after profile change")

    def keepalive(self) -> None:
        if self.call("/session/keepalive", {"csrf_token": self.token}, 303) is not None:
            self.settle("after keepalive")

    def sign_out(self) -> None:
        cookie = self.client.cookie(SESSION)
        reply = self.call("/logout", {"csrf_token": self.token}, 303)
        if cookie:
            self.retired.append((cookie, reply is not None))
        if reply is not None:
            self.signed_in = False
            self.settle("after sign-out")

    def step(self) -> None:
        if self.uncertain:
            self.settle()
        elif not self.signed_in:
            self.sign_in()
        else:
            random.choice([self.change_profile] * 3 + [self.keepalive] * 3 + [self.sign_out])()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step()
        except Exception as error:  # a bug in the test itself: fail loudly, not silently
            self.tally.fail(f"{self.username}: {type(error).__name__}: {error}")

    def check_every_cookie(self, server: LiveServer) -> int:
        """The browser's state must be what its last answer said (or, uncertain, either),
        and every cookie it retired must be dead (or, if its end was not answered, own or
        dead). Returns how many cookies were checked."""
        self.client.server = server
        while self.uncertain:
            self.settle("final")
        self.settle("final")
        hello = self.call("/api/hello", None, 200, 401)
        if hello is not None and (hello.status == 200) != self.signed_in:
            self.tally.fail(
                f"{self.username} /api/hello: {hello.status}, signed_in={self.signed_in}"
            )
        for value, answered in self.retired:
            replayed = Client(server)
            replayed.plant(SESSION, value)
            reply = replayed.request("/session")
            if reply.status != 200:
                self.tally.fail(f"{self.username} replayed cookie: {reply.status}")
                continue
            user = self.check(reply, "replayed cookie")
            if answered and user is not None:
                self.tally.fail(f"{self.username}: a cookie whose end was answered still works")
        return 1 + len(self.retired)


class Load:
    """VISITORS browsers in their own threads, each its own freshly signed-up user."""

    def __init__(self, server: LiveServer) -> None:
        self.tally = Tally()
        self.visitors = [Visitor(server, self.tally, n) for n in range(VISITORS)]
        for visitor in self.visitors:
            visitor.sign_up()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=v.run, args=(self.stop,), daemon=True) for v in self.visitors
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def check_every_cookie(self, server: LiveServer) -> int:
        return sum(visitor.check_every_cookie(server) for visitor in self.visitors)

    def report(self, label: str, **figures: object) -> str:
        tally = self.tally
        return (
            f"{label}: {dict(figures)}; answers {dict(tally.answers)}; "
            f"dropped connections {dict(tally.dropped)}; failures {len(tally.failures)}"
        )


# --- configurations -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def configuration(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """What a server of each configuration needs besides `_environment`: nothing for files
    and SQLite; for the distributed one a Redis and a PostgreSQL server (URL, not database)."""
    if request.param == "embedded":
        yield {}
        return
    redis = RedisServer()
    redis.start()
    try:
        with running_postgres() as postgres:
            yield {
                "WEBAPP_SESSION_BACKEND": "redis",
                "WEBAPP_REDIS_URL": redis.url,
                "postgres": postgres.url,
            }
    finally:
        redis.stop()


def server_environment(configuration: dict[str, str], folder: Path) -> dict[str, str]:
    """A new instance folder (and database, on PostgreSQL) with the live tests' user."""
    env = {**_environment(folder / "instance", 1), **configuration}
    if postgres := env.pop("postgres", None):
        env["WEBAPP_DATABASE_URL"] = create_database(postgres)
    _create_user(env)  # also migrates the database before the workers start
    return env


def temporary_files(env: dict[str, str]) -> list[str]:
    folder = Path(env["WEBAPP_INSTANCE_PATH"]) / "sessions"
    if not folder.exists():
        return []
    return [name for name in os.listdir(folder) if name.endswith(TEMPORARY_SUFFIX)]


def prune(env: dict[str, str]) -> None:
    """The documented prune command runs on what the crash left behind."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "webapp", "sessions", "prune"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"sessions prune failed:\n{result.stdout}\n{result.stderr}"


# --- the tests ----------------------------------------------------------------------------


def test_killed_workers_are_replaced_and_no_session_is_damaged_or_crossed(
    configuration, tmp_path_factory
):
    folder = tmp_path_factory.mktemp("crash-workers")
    env = server_environment(configuration, folder)
    with gunicorn(env, folder, 1) as server:
        master = master_of(server)
        workers = children(master)
        assert len(workers) == 2
        load = Load(server)
        replaced = []
        with load:
            for _ in range(KILLS):
                time.sleep(random.uniform(*LOAD_BEFORE_KILL))
                victim = random.choice(sorted(workers))
                os.kill(victim, signal.SIGKILL)
                workers = wait_for_replacement(master, workers, victim, len(workers))
                replaced.append(victim)
                assert answers_health(server), server.output()
            time.sleep(LOAD_BEFORE_KILL[1])
        checked = load.check_every_cookie(server)
        leftovers = temporary_files(env)
        print(
            load.report(
                "worker kills",
                kills=KILLS,
                replaced=len(replaced),
                cookies_checked=checked,
                temporary_files_left=len(leftovers),
            )
        )
        assert load.tally.failures == [], "\n".join(load.tally.failures)
        assert len(replaced) == KILLS
        assert sum(load.tally.answers.values()) > 100, load.tally.answers  # the load was real
        for visitor in load.visitors:  # and service goes on for everyone
            if not visitor.signed_in:
                visitor.sign_in()
            assert visitor.signed_in and not visitor.uncertain, load.tally.failures


def test_the_whole_server_killed_mid_load_restarts_with_sessions_intact(
    configuration, tmp_path_factory
):
    folder = tmp_path_factory.mktemp("crash-server")
    env = server_environment(configuration, folder)
    with gunicorn(env, folder, 1) as server:
        master = master_of(server)
        load = Load(server)
        with load:
            time.sleep(2 * LOAD_BEFORE_KILL[1])
            everyone = [*children(master), master]
            for pid in everyone:  # as a power cut would, but with the page cache kept
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)  # the browsers' next requests are refused
        assert not answers_health_or_refused(server)
    leftovers = temporary_files(env)
    prune(env)  # leftovers or not, the prune command and a new server start fine
    restart = tmp_path_factory.mktemp("crash-server-restarted")
    with gunicorn(env, restart, 1) as server:
        checked = load.check_every_cookie(server)
        print(
            load.report(
                "whole server killed",
                processes_killed=len(everyone),
                cookies_checked=checked,
                temporary_files_left=len(leftovers),
            )
        )
        assert load.tally.failures == [], "\n".join(load.tally.failures)
        signed_in = sum(visitor.signed_in for visitor in load.visitors)
        for visitor in load.visitors:
            if not visitor.signed_in:
                visitor.sign_in()
            assert visitor.signed_in and not visitor.uncertain, load.tally.failures
            visitor.change_profile()
            assert not visitor.uncertain, load.tally.failures
        print(f"signed in across the restart: {signed_in} of {VISITORS}")


def answers_health_or_refused(server: LiveServer) -> bool:
    """Whether anything still answers on the dead server's port."""
    try:
        return answers_health(server)
    except OSError:
        return False
