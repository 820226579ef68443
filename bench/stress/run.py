"""`make stress`: hundreds of simulated users against gunicorn, every response checked.

For each configuration (files + SQLite, Redis + PostgreSQL on throwaway loopback servers) it
starts the app as `make run` does (gunicorn.conf.py, 2 workers, production Argon2) on a free
loopback port, seeds --users accounts, and runs two scenarios:

- warm-up: every simulated user (a thread with its own cookie jar) signs in through the form
  (at most --sign-in-concurrency sign-ins at once), and those already in poll /session while
  the others queue. The run fails if not all are in after --warm-up-limit seconds.
- load, timed (--duration seconds), beginning with every user signed in: each polls /session
  (JSON, and the widget's fragment with X-Session-State), opens protected pages, calls
  /api/hello, changes its name (its email stays: a new one waits for its mailed link),
  sometimes says "Stay signed in"; --sign-out-share of them sign out once and back in. Every
  response (warm-up too) is checked: its status, that a user who believes it is signed in is
  (its own username, its current name), that it holds no other user's data, that polls set no
  cookie, that an ended session's cookie is dead.
- anonymous: --anonymous visits to /login, /signup and / with empty cookie jars (wrk), while
  signed-in users keep polling; the store must hold as many entries afterwards as before, and
  every signed-in session must still be valid.
- anonymous baskets: --anonymous-baskets visitors (wrk) who each put one product in a basket
  (POST /basket/items with an anonymous CSRF cookie, no session), while signed-in users keep
  polling: the store must grow by exactly one entry per visitor, every one of them must be due
  for expiry within a day (the anonymous lifetime), and every signed-in session must still be
  valid; their polls' latency is shown.

It prints one table and exits 1 when a target is missed (5xx, lost sessions, another user's
data, store growth...). Only 127.0.0.1 is contacted; servers and folders are removed at the
end, also on Ctrl-C. The bench's helpers (bench/run.py, through tests/support/gunicorn.py)
start and stop the servers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import html
import importlib.util
import json
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from email.message import Message
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LUA = HERE / "anonymous.lua"
BASKET_LUA = HERE / "anonymous_basket.lua"


def _load_bench() -> Any:
    """bench/run.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("webapp_bench_run", ROOT / "bench/run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
progress = bench.progress

#: Every user's username, name and email carry this followed by the user's 4-digit number, so
#: that one search of a response finds any user's data in it.
MARKER = "stressuser"
USER_DATA = re.compile(MARKER + r"(\d{4})")
PASSWORD = "stress correct horse battery staple"
COOKIE = bench.COOKIE  # the session cookie's name on plain HTTP
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
WIDGET_STATUS = re.compile(r'data-session-status="([a-z]+)"')
DATA_STATE = bench.DATA_STATE
#: Seconds a simulated user waits for an answer before counting the request as failed.
REQUEST_TIMEOUT = 60.0
WORKERS = bench.Workers("gthread", 2, 8)  # gunicorn.conf.py's worker class and threads
#: At most this many problems are described in the report (all are counted).
EXAMPLES = 8
#: Signed-in users that keep polling during the anonymous visits.
ANONYMOUS_POLLERS = 50

#: What a signed-in user does between sign-in and sign-out, with weights: mostly what the
#: widget does on its own (a poll every few seconds, unchanged: 204), some navigation.
ACTIONS = {
    "poll_widget": 40,
    "poll_json": 10,
    "profile_page": 12,
    "sessions_page": 6,
    "api_hello": 12,
    "home_page": 8,
    "profile_form": 3,
    "change_profile": 5,
    "keepalive": 4,
}


class StressError(Exception):
    """Something the harness cannot go on without; reported without a traceback."""


# counting ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the simulated users saw; each user keeps its own, merged at the end."""

    requests: int = 0
    server_errors: int = 0  # 5xx
    unexpected: int = 0  # any other status or answer than the one expected
    failed: int = 0  # no answer at all: connection refused, reset, timed out
    lost_sessions: int = 0  # signed in, but the server answered as to a stranger
    other_users_data: int = 0  # responses holding another user's username, name or email
    poll_cookies: int = 0  # /session responses that set a cookie
    ended_still_valid: int = 0  # a signed-out session's cookie still signed in
    stale_profile: int = 0  # the user's old name or email shown after the change
    sign_ins: int = 0
    sign_outs: int = 0
    profile_changes: int = 0
    latencies: list[float] = field(default_factory=list)  # ms, every request but sign-in POSTs
    sign_in_latencies: list[float] = field(default_factory=list)  # ms, POST /login
    sign_in_waits: list[float] = field(default_factory=list)  # ms at the door (see SignInDoor)
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)

    def merge(self, other: Tally) -> None:
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, item.name, mine + theirs)
        self.examples = self.examples[:EXAMPLES]


# one simulated browser ---------------------------------------------------------------------


class KeepEveryResponse(urllib.request.HTTPErrorProcessor):
    """Hand back 3xx, 4xx and 5xx as they are: redirects are checked, not followed."""

    def http_response(self, request: urllib.request.Request, response: Any) -> Any:
        return response


@dataclass
class Reply:
    method: str
    path: str
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def location(self) -> str:
        return urllib.parse.urlsplit(self.headers.get("Location") or "").path

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.status}"


class SignInDoor:
    """Lets at most N sign-ins (POST /login) be in flight at once. Argon2 runs on one thread
    per gunicorn worker, so more only queue there, each holding a request thread that polls
    need; the time a user waits here is reported."""

    def __init__(self, size: int, stop: threading.Event) -> None:
        self.semaphore = threading.BoundedSemaphore(size)
        self.stop = stop

    @contextmanager
    def enter(self, tally: Tally) -> Iterator[bool]:
        """Yields True once inside, False if the run stopped while waiting."""
        began = time.perf_counter()
        while not self.semaphore.acquire(timeout=0.5):
            if self.stop.is_set():
                yield False
                return
        tally.sign_in_waits.append((time.perf_counter() - began) * 1000)
        try:
            yield True
        finally:
            self.semaphore.release()


@dataclass
class Phases:
    """What every user thread follows: the timed load's start (set once all are signed in,
    and on the way out), the end of the run, and the plan's figures."""

    duration: float  # seconds of timed load
    sign_out_share: float  # users that sign out (once) during the timed load
    arrival: float  # seconds over which the users arrive for the warm-up
    timed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    began: float = 0.0  # time.monotonic() when the timed load began


class User:
    """One person in one browser: a cookie jar, a new connection per request (so either
    worker may answer), and what it believes: signed in or not, its name and email."""

    def __init__(self, port: int, number: int, tally: Tally) -> None:
        self.port, self.number, self.tally = port, number, tally
        self.username = f"{MARKER}{number:04d}"
        self.name, self.email = initial_profile(number)
        self.version = 0
        self.signed_in = False
        self.csrf: str | None = None  # the last page's <meta name="csrf-token">
        self.widget_state: str | None = None  # what the widget shows (X-Session-State)
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # 127.0.0.1 only, whatever *_proxy says
            urllib.request.HTTPCookieProcessor(self.jar),
            KeepEveryResponse,
        )

    # HTTP ----------------------------------------------------------------------------------

    def request(
        self,
        path: str,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        opener: urllib.request.OpenerDirector | None = None,
        sign_in: bool = False,
    ) -> Reply | None:
        """One request; the reply is counted, timed and searched for other users' data.
        None when nothing came back (counted as failed)."""
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        method = "POST" if form is not None else "GET"
        url = f"http://127.0.0.1:{self.port}{path}"
        request = urllib.request.Request(url, data=body, headers=headers or {})
        began = time.perf_counter()
        try:
            with (opener or self.opener).open(request, timeout=REQUEST_TIMEOUT) as response:
                reply = Reply(method, path, response.status, response.headers, response.read())
        except (OSError, urllib.error.URLError) as error:
            self.tally.failed += 1
            self.tally.note(f"{self.username} {method} {path}: no answer ({error})")
            return None
        elapsed = (time.perf_counter() - began) * 1000
        (self.tally.sign_in_latencies if sign_in else self.tally.latencies).append(elapsed)
        self.tally.requests += 1
        if reply.status >= 500:
            self.tally.server_errors += 1
            self.tally.note(f"{self.username} {reply}: {reply.text[:200]}")
        self.inspect(reply)
        return reply

    # checks: every one counts, none raises ----------------------------------------------------

    def inspect(self, reply: Reply) -> None:
        """Count the reply if it holds another user's username, name or email."""
        others = {int(n) for n in USER_DATA.findall(reply.text)} - {self.number}
        if others:
            self.tally.other_users_data += 1
            self.tally.note(
                f"{self.username} {reply} shows user(s) {sorted(others)[:5]}'s data: "
                f"{reply.text[:200]}"
            )

    def expect(self, reply: Reply | None, *statuses: int, location: str | None = None) -> bool:
        """Whether the reply has one of `statuses` (and, for a redirect, goes to `location`).
        If not, it is counted: as a lost session when a signed-in user is answered as a
        stranger, as unexpected otherwise (5xx and no answer are already counted)."""
        if reply is None:
            return False
        if reply.status in statuses and (location is None or reply.location == location):
            return True
        if reply.status >= 500:
            return False
        if self.signed_in and signed_out_answer(reply):
            self.lost(reply, "answered as to a stranger")
        else:
            self.tally.unexpected += 1
            where = f" -> {reply.location}" if reply.location else ""
            self.tally.note(f"{self.username} {reply}{where}, expected {statuses} {location or ''}")
        return False

    def lost(self, reply: Reply, why: str) -> None:
        """A session that should be valid is not: count it, and sign in again from scratch."""
        self.tally.lost_sessions += 1
        self.tally.note(f"{self.username} {reply}: session lost ({why}): {reply.text[:200]}")
        self.signed_in = False
        self.jar.clear()

    def check_user(self, reply: Reply, user: Any) -> None:
        """/session's user while signed in: this user, with its current name and email."""
        if not isinstance(user, dict) or not user:
            self.lost(reply, "no user")
        elif user.get("username") != self.username:
            self.lost(reply, f"user {user.get('username')!r}")  # another's data: counted too
        elif (user.get("name"), user.get("email")) != (self.name, self.email):
            self.tally.stale_profile += 1
            self.tally.note(f"{self.username} {reply}: shows {user}, not {self.name}")

    def check_page(self, reply: Reply) -> None:
        """A protected page: it shows this user, and its CSRF token is kept for POSTs."""
        if match := CSRF_META.search(reply.text):
            self.csrf = html.unescape(match[1])
        if self.username not in reply.text and self.name not in reply.text:
            self.tally.unexpected += 1
            self.tally.note(f"{self.username} {reply}: the page does not show its user")

    # what a person does -------------------------------------------------------------------

    def sign_in(self, door: SignInDoor) -> bool:
        """GET /login for the form, POST it, follow the 303 to /profile as a browser does."""
        page = self.request("/login")
        if not self.expect(page, 200) or page is None:
            return False
        token = bench.CSRF_INPUT.search(page.text)
        if token is None:
            self.tally.unexpected += 1
            self.tally.note(f"{self.username} {page}: no csrf_token field")
            return False
        form = {
            "username": self.username,
            "password": PASSWORD,
            "csrf_token": html.unescape(token[1]),
            "next": "",
        }
        with door.enter(self.tally) as inside:
            if not inside:
                return False
            answer = self.request("/login", form=form, sign_in=True)
        if not self.expect(answer, 303, location="/profile"):
            return False
        self.tally.sign_ins += 1
        self.signed_in, self.widget_state, self.csrf = True, None, None
        self.profile_page()
        return self.signed_in

    def sign_out(self) -> None:
        """POST /logout; then the old cookie must be dead, and /session must show nobody."""
        old = self.session_cookie()
        answer = self.request("/logout", form={"csrf_token": self.csrf or ""})
        if not self.expect(answer, 303, location="/login"):
            return
        self.tally.sign_outs += 1
        self.signed_in = False
        if old is not None:
            replay = urllib.request.build_opener(urllib.request.ProxyHandler({}), KeepEveryResponse)
            reply = self.request("/session", headers={"Cookie": f"{COOKIE}={old}"}, opener=replay)
            if self.expect(reply, 200) and reply is not None and reply.json() != {}:
                self.tally.ended_still_valid += 1
                self.tally.note(f"{self.username}: a signed-out cookie still shows {reply.text}")
        self.poll_json()

    def session_cookie(self) -> str | None:
        return next((cookie.value for cookie in self.jar if cookie.name == COOKIE), None)

    def poll_json(self) -> None:
        reply = self.request("/session", headers={"Accept": "application/json"})
        if not self.expect(reply, 200) or reply is None:
            return
        self.check_poll_cookies(reply)
        data = reply.json()
        if self.signed_in:
            self.check_user(reply, (data or {}).get("user") if isinstance(data, dict) else None)
        elif data != {}:
            self.tally.ended_still_valid += 1
            self.tally.note(f"{self.username}: signed out, but /session shows {reply.text}")

    def poll_widget(self) -> None:
        """What the widget does every few seconds: send the state it shows; 204 if unchanged."""
        headers = {"HX-Request": "true", "HX-Current-URL": f"http://127.0.0.1:{self.port}/"}
        if self.widget_state:
            headers["X-Session-State"] = self.widget_state
        reply = self.request("/session", headers=headers)
        statuses = (200, 204) if self.widget_state else (200,)
        if not self.expect(reply, *statuses) or reply is None:
            return
        self.check_poll_cookies(reply)
        if reply.status == 204:
            return
        self.check_widget(reply)

    def check_widget(self, reply: Reply) -> None:
        status = WIDGET_STATUS.search(reply.text)
        state = DATA_STATE.search(reply.text)
        self.widget_state = state[1] if state else None
        shown = status[1] if status else None
        if self.signed_in and shown != "authenticated":
            self.lost(reply, f"the widget shows {shown}")
        elif self.signed_in and f"Welcome, {self.name}!" not in reply.text:
            self.tally.stale_profile += 1
            self.tally.note(f"{self.username} {reply}: the widget does not greet {self.name}")

    def check_poll_cookies(self, reply: Reply) -> None:
        if reply.headers.get_all("Set-Cookie"):
            self.tally.poll_cookies += 1
            self.tally.note(f"{self.username} {reply} set a cookie")

    def profile_page(self) -> None:
        reply = self.request("/profile")
        if self.expect(reply, 200) and reply is not None:
            self.check_page(reply)
            if f"Welcome, {self.name}!" not in reply.text:
                self.tally.stale_profile += 1
                self.tally.note(f"{self.username} {reply}: does not greet {self.name}")

    def sessions_page(self) -> None:
        reply = self.request("/account/sessions")
        if self.expect(reply, 200) and reply is not None:
            self.check_page(reply)

    def profile_form(self) -> None:
        reply = self.request("/account/profile")
        if self.expect(reply, 200) and reply is not None:
            self.check_page(reply)

    def home_page(self) -> None:
        reply = self.request("/")
        if (
            self.expect(reply, 200)
            and reply is not None
            and (match := CSRF_META.search(reply.text))
        ):
            self.csrf = html.unescape(match[1])

    def api_hello(self) -> None:
        reply = self.request("/api/hello", headers={"Accept": "application/json"})
        if not self.expect(reply, 200) or reply is None:
            return
        message = (reply.json() or {}).get("message")
        if message != f"Hello, {self.name}":
            self.tally.stale_profile += 1
            self.tally.note(f"{self.username} {reply}: {message!r}, not Hello, {self.name}")

    def change_profile(self) -> None:
        """next-auth's update(): open the form, post a new name, then /session must show it at
        once. The email is posted unchanged: a new address takes effect only once the link
        mailed to it is opened (and asks for a fresh sign-in first)."""
        self.profile_form()
        if not self.signed_in:
            return
        name = profile_version(self.number, self.version + 1)[0]
        form = {"name": name, "email": self.email, "csrf_token": self.csrf or ""}
        answer = self.request("/account/profile", form=form)
        if not self.expect(answer, 303, location="/account/profile"):
            return
        self.version += 1
        self.name = name
        self.tally.profile_changes += 1
        self.poll_json()

    def keepalive(self) -> None:
        """The widget's "Stay signed in" button (htmx): it answers the widget."""
        headers = {"HX-Request": "true", "X-CSRFToken": self.csrf or ""}
        reply = self.request("/session/keepalive", form={}, headers=headers)
        if self.expect(reply, 200) and reply is not None:
            self.check_widget(reply)

    # the loop ------------------------------------------------------------------------------

    def live(self, phases: Phases, door: SignInDoor, timed_tally: Tally) -> None:
        """Warm-up: arrive, sign in, poll like the widget until every user is in. Then the timed
        load: use the site, sign out at most once (at the time the plan says) and come back."""
        rng = random.Random(self.number)
        leaves = rng.random() < phases.sign_out_share
        leave_at = rng.uniform(0, 0.75 * phases.duration) if leaves else None
        if phases.timed.wait(rng.uniform(0, phases.arrival)):
            return
        while not phases.timed.is_set():
            if not self.signed_in:
                self.come_in(phases.timed, door, rng)
            elif not phases.timed.wait(rng.uniform(1.0, 4.0)):
                self.poll_widget() if rng.random() < 0.7 else self.poll_json()
        self.tally = timed_tally
        while not phases.stop.is_set():
            if not self.signed_in:  # back after signing out, or a lost session (counted)
                self.come_in(phases.stop, door, rng)
            elif phases.stop.wait(rng.uniform(1.0, 4.0)):
                return  # stays signed in: the anonymous scenario checks these sessions
            elif leave_at is not None and time.monotonic() - phases.began >= leave_at:
                leave_at = None
                self.sign_out()
                phases.stop.wait(rng.uniform(2, 8))
            else:
                action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
                getattr(self, action)()

    def come_in(self, until: threading.Event, door: SignInDoor, rng: random.Random) -> None:
        """Sign in and look at /session; after a failure (counted), wait a little."""
        if self.sign_in(door):
            self.poll_json()
        else:
            until.wait(rng.uniform(1, 3))

    def run(self, work: Callable[[], None]) -> None:
        """A thread's body: an exception in the harness is a failure, not a dead thread."""
        try:
            work()
        except Exception as error:  # a bug in the harness, or an answer it cannot read
            self.tally.failed += 1
            self.tally.note(f"{self.username}: harness error {type(error).__name__}: {error}")


def signed_out_answer(reply: Reply) -> bool:
    """What a protected route answers a stranger: 401, or a redirect to the sign-in form."""
    return reply.status == 401 or (300 <= reply.status < 400 and reply.location == "/login")


def initial_profile(number: int) -> tuple[str, str]:
    return profile_version(number, 0)


def profile_version(number: int, version: int) -> tuple[str, str]:
    """Name and email of a user after `version` changes: both carry its username."""
    username = f"{MARKER}{number:04d}"
    return f"Stress {username} v{version}", f"{username}.v{version}@example.com"


# configurations ----------------------------------------------------------------------------


@dataclass
class Backend:
    """One configuration: its label, the settings the servers get, and how to count entries."""

    label: str
    settings: dict[str, str]
    count_entries: Callable[[], int]
    #: How many entries expire within the given number of seconds from now.
    due_within: Callable[[float], int]


@contextmanager
def files_backend(instance: Path) -> Iterator[Backend]:
    from webapp.sessions.pruning import _expired_files

    def due_within(seconds: float) -> int:
        """What the pruning sweep would delete `seconds` from now (its own reading)."""
        return sum(1 for _ in _expired_files(str(instance / "sessions"), time.time() + seconds))

    yield Backend("files + SQLite", {}, lambda: bench.store_entries(instance), due_within)


@contextmanager
def distributed_backend(_instance: Path) -> Iterator[Backend]:
    from redis import Redis
    from support.postgres import running_postgres
    from support.redis_server import redis_server

    with redis_server() as redis, running_postgres() as postgres:
        progress(f"Redis on {redis.url}, PostgreSQL on {postgres.url}")
        client = Redis.from_url(redis.url)
        settings = {
            "WEBAPP_SESSION_BACKEND": "redis",
            "WEBAPP_REDIS_URL": redis.url,
            "WEBAPP_DATABASE_URL": postgres.url,
        }

        def due_within(seconds: float) -> int:
            due = 0
            keys = list(client.scan_iter("session:*", count=1000))
            for start in range(0, len(keys), 1000):
                pipe = client.pipeline(transaction=False)
                for key in keys[start : start + 1000]:
                    pipe.ttl(key)
                due += sum(1 for ttl in pipe.execute() if 0 <= ttl <= seconds)
            return due

        try:
            yield Backend("Redis + PostgreSQL", settings, lambda: int(client.dbsize()), due_within)
        finally:
            client.close()


BACKENDS = {"files": files_backend, "distributed": distributed_backend}


def seed_users(instance: Path, backend: Backend, count: int) -> None:
    """Create the accounts fast: Argon2 at the production cost once, that hash for all."""
    from sqlalchemy import insert

    from webapp import create_app
    from webapp.db import engine_of, get_db
    from webapp.models import User
    from webapp.passwords import passwords

    names = {"WEBAPP_DATABASE_URL": "DATABASE_URL", "WEBAPP_SESSION_BACKEND": "SESSION_BACKEND"}
    names["WEBAPP_REDIS_URL"] = "REDIS_URL"
    config = {names[key]: value for key, value in backend.settings.items()}
    app = create_app({"INSTANCE_PATH": str(instance), "SECURE_COOKIES": False, **config})
    try:
        with app.app_context():
            password_hash = passwords().hash(PASSWORD)
            rows = []
            for number in range(count):
                name, email = initial_profile(number)
                username = f"{MARKER}{number:04d}"
                rows.append(
                    {
                        "username": username,
                        "username_key": username,
                        "name": name,
                        "email": email,
                        "password_hash": password_hash,
                    }
                )
            db = get_db()
            db.execute(insert(User), rows)
            db.commit()
            db.close()
    finally:
        engine_of(app).dispose()
    progress(f"seeded {count} users")


# the scenarios -----------------------------------------------------------------------------


@dataclass
class WarmUp:
    tally: Tally
    seconds: float


@dataclass
class LoadResult:
    warm_up: WarmUp
    tally: Tally  # the timed load's
    seconds: float
    users: int
    signed_in_at_start: int
    signed_in: list[int]  # sampled every second during the timed load
    signed_in_at_end: int


def run_load(port: int, users: list[User], args: argparse.Namespace) -> LoadResult:
    """The warm-up (every user signs in, those in poll), then --duration seconds of timed load
    that begins with every user signed in. One thread per user for both."""
    arrival = min(5.0, len(users) / 50)  # not all GET /login in the same instant
    phases = Phases(args.duration, args.sign_out_share, arrival)
    door = SignInDoor(args.sign_in_concurrency, phases.stop)
    warm_tallies, timed_tallies = [Tally() for _ in users], [Tally() for _ in users]
    previous = threading.stack_size(512 * 1024)  # hundreds of threads that mostly sleep
    threads = []
    for user, warm, timed in zip(users, warm_tallies, timed_tallies, strict=True):
        user.tally = warm
        live = functools.partial(user.live, phases, door, timed)
        threads.append(
            threading.Thread(target=user.run, args=(live,), name=user.username, daemon=True)
        )
    progress(
        f"warm-up: {len(users)} users sign in (at most {args.sign_in_concurrency} sign-ins at "
        f"once) while those in poll; limit {args.warm_up_limit} s"
    )
    began = time.monotonic()
    for thread in threads:
        thread.start()
    threading.stack_size(previous)
    try:
        warm_up(users, warm_tallies, began, args.warm_up_limit)
        phases.began = time.monotonic()
        at_start = sum(user.signed_in for user in users)
        phases.timed.set()
        progress(f"load: {at_start} of {len(users)} users signed in, for {args.duration} s")
        samples = [at_start]
        while (left := args.duration - (time.monotonic() - phases.began)) > 0:
            time.sleep(min(1.0, left))
            samples.append(sum(user.signed_in for user in users))
            if len(samples) % 10 == 1 or left <= 1:
                done = sum(tally.requests for tally in timed_tallies)
                elapsed = time.monotonic() - phases.began
                progress(f"  {elapsed:5.0f} s: {done:,} requests, {samples[-1]} signed in")
    finally:
        seconds = time.monotonic() - phases.began
        phases.stop.set()
        phases.timed.set()  # on the way out of a failed warm-up too
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT + 10)
    warm_tally, tally = Tally(), Tally()
    for warm, timed in zip(warm_tallies, timed_tallies, strict=True):
        warm_tally.merge(warm)
        tally.merge(timed)
    at_end = sum(user.signed_in for user in users)
    return LoadResult(
        WarmUp(warm_tally, phases.began - began),
        tally,
        seconds,
        len(users),
        at_start,
        samples,
        at_end,
    )


def warm_up(users: list[User], tallies: list[Tally], began: float, limit: float) -> None:
    """Wait until every user is signed in; StressError past `limit` seconds."""
    reported = began
    while (signed := sum(user.signed_in for user in users)) < len(users):
        now = time.monotonic()
        if now - began > limit:
            tally = Tally()
            for each in tallies:
                tally.merge(each)
            raise StressError(
                f"warm-up: only {signed} of {len(users)} users signed in after {limit:g} s "
                f"(--warm-up-limit); {tally.sign_ins} sign-ins "
                f"({tally.sign_ins / (now - began):.1f}/s), {tally.requests:,} requests, "
                f"{tally.server_errors} 5xx, {tally.unexpected} other unexpected, "
                f"{tally.failed} with no answer"
                + "".join(f"\n  e.g. {example}" for example in tally.examples)
            )
        if now - reported >= 10:
            reported = now
            done = sum(tally.requests for tally in tallies)
            progress(f"  {now - began:5.0f} s: {signed} signed in, {done:,} requests")
        time.sleep(0.2)
    progress(f"warm-up: all {signed} signed in after {time.monotonic() - began:.0f} s")


@dataclass
class AnonymousResult:
    asked: int
    visits: int
    seconds: float
    wrong_status: int
    csrf_cookies: int
    session_cookies: int
    user_data: int
    entries_before: int
    entries_after: int
    signed_in: int
    tally: Tally  # the signed-in users polling meanwhile, and checked after


@contextmanager
def signed_in_polling(signed: list[User], tally: Tally) -> Iterator[int]:
    """The first ANONYMOUS_POLLERS signed-in users poll (counted in `tally`) while the body
    runs; afterwards every signed-in session is checked once. Yields how many poll."""
    for user in signed:
        user.tally = tally
    stop = threading.Event()

    def poll(user: User) -> None:
        rng = random.Random(user.number)
        while not stop.wait(rng.uniform(1.0, 3.0)) and user.signed_in:
            user.poll_widget() if rng.random() < 0.7 else user.poll_json()

    pollers = [
        threading.Thread(target=user.run, args=(lambda user=user: poll(user),), daemon=True)
        for user in signed[:ANONYMOUS_POLLERS]
    ]
    for thread in pollers:
        thread.start()
    try:
        yield len(pollers)
    finally:
        stop.set()
        for thread in pollers:
            thread.join(timeout=REQUEST_TIMEOUT + 10)
    for user in signed:  # every session signed in before must still be
        if user.signed_in:
            user.poll_json()


def run_anonymous(
    port: int, users: list[User], backend: Backend, args: argparse.Namespace
) -> AnonymousResult:
    """wrk's anonymous visits while signed-in users poll; entries counted before and after."""
    signed = [user for user in users if user.signed_in]
    tally = Tally()
    before = backend.count_entries()
    with signed_in_polling(signed, tally) as polling:
        progress(
            f"anonymous: {args.anonymous:,} visits; {polling} of {len(signed)} signed-in "
            f"users polling; {before:,} store entries"
        )
        result = run_wrk(port, args.anonymous, args.wrk_connections)
        after = backend.count_entries()
    statuses = {int(status): n for status, n in result["statuses"].items()}
    wrong = sum(n for status, n in statuses.items() if status != 200)
    wrong += result["socket_errors"] + result["timeouts"]
    return AnonymousResult(
        asked=args.anonymous,
        visits=result["requests"],
        seconds=result["duration_us"] / 1e6,
        wrong_status=wrong,
        csrf_cookies=result["csrf_cookie"],
        session_cookies=result["session_cookie"],
        user_data=result["user_data"],
        entries_before=before,
        entries_after=after,
        signed_in=len(signed),
        tally=tally,
    )


@dataclass
class BasketResult:
    asked: int
    visits: int
    seconds: float
    p50_ms: float
    p99_ms: float
    wrong_status: int  # not 303, or no answer
    session_cookies: int
    user_data: int
    entries_before: int
    entries_after: int
    in_flight: int  # wrk's connections: requests it may have sent but not counted at its stop
    due_in_a_day: int  # entries that expire within ANONYMOUS_LIFETIME (+ a minute)...
    entries_at_due_count: int  # ...of this many (counted again: late requests may have landed)
    count_seconds: float  # how long finding them took (for files: the pruning sweep's reading)
    signed_in: int
    tally: Tally  # the signed-in users polling meanwhile, and checked after


def anonymous_csrf(port: int) -> tuple[str, str]:
    """An anonymous visitor's CSRF cookie (as a Cookie header) and its form token, from
    /basket as a browser gets them."""
    jar = CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar)
    )
    with opener.open(f"http://127.0.0.1:{port}/basket", timeout=REQUEST_TIMEOUT) as response:
        page = response.read().decode()
    token = CSRF_META.search(page)
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)
    if token is None or not cookies:
        raise StressError("/basket gave no CSRF token or cookie")
    return cookies, html.unescape(token.group(1))


def run_anonymous_baskets(
    port: int, users: list[User], backend: Backend, args: argparse.Namespace
) -> BasketResult:
    """wrk's anonymous visitors each adding one product while signed-in users poll; entries
    counted before and after, and how many of them expire within the anonymous lifetime."""
    from webapp.sessions.policy import ANONYMOUS_LIFETIME

    signed = [user for user in users if user.signed_in]
    tally = Tally()
    cookie, token = anonymous_csrf(port)
    body = urllib.parse.urlencode({"csrf_token": token, "sku": "tea", "quantity": "1"})
    before = backend.count_entries()
    with signed_in_polling(signed, tally) as polling:
        progress(
            f"anonymous baskets: {args.anonymous_baskets:,} visitors; {polling} of "
            f"{len(signed)} signed-in users polling; {before:,} store entries"
        )
        result = run_wrk(
            port,
            args.anonymous_baskets,
            args.wrk_connections,
            script=BASKET_LUA,
            script_args=[cookie, body, MARKER],
        )
        after = backend.count_entries()
    settled = backend.count_entries()
    began = time.monotonic()
    due = backend.due_within(ANONYMOUS_LIFETIME + 60)
    counted = time.monotonic() - began
    statuses = {int(status): n for status, n in result["statuses"].items()}
    wrong = sum(n for status, n in statuses.items() if status != 303)
    wrong += result["socket_errors"] + result["timeouts"]
    return BasketResult(
        asked=args.anonymous_baskets,
        visits=result["requests"],
        seconds=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        wrong_status=wrong,
        session_cookies=result["session_cookie"],
        user_data=result["user_data"],
        entries_before=before,
        entries_after=after,
        in_flight=args.wrk_connections,
        due_in_a_day=due,
        entries_at_due_count=settled,
        count_seconds=counted,
        signed_in=len(signed),
        tally=tally,
    )


def run_wrk(
    port: int,
    visits: int,
    connections: int,
    script: Path = LUA,
    script_args: list[str] | None = None,
) -> dict[str, Any]:
    """wrk with `script` (anonymous.lua, or anonymous_basket.lua with its `script_args`):
    each thread stops after its share of `visits`; once all have said so, SIGINT ends wrk's
    wait for -d (only a bound) and it prints its counts."""
    threads = 2
    per_thread = -(-visits // threads)
    # Seconds: a bound, not the plan. Below the idle timeout (1800 s), so that the signed-in
    # sessions checked afterwards cannot have timed out meanwhile.
    limit = min(1200, max(60, visits // 50))
    command = ["wrk", f"-t{threads}", f"-c{max(connections, threads)}", f"-d{limit}s"]
    command += ["--timeout", "10s", "--latency", "-s", str(script)]
    command += [f"http://127.0.0.1:{port}/", "--", str(per_thread), *(script_args or [MARKER])]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(limit + 60, process.kill)
    watchdog.start()
    output, finished = [], 0
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("STRESS_THREAD_DONE"):
                finished += 1
                if finished == threads:
                    process.send_signal(signal.SIGINT)
        process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    for line in output:
        if line.startswith("STRESS_ANONYMOUS "):
            result: dict[str, Any] = json.loads(line.removeprefix("STRESS_ANONYMOUS "))
            return result
    raise StressError(f"wrk gave no result ({process.returncode}):\n{''.join(output)}")


@dataclass
class ConfigResult:
    label: str
    load: LoadResult
    anonymous: AnonymousResult | None
    problems: list[str]
    baskets: BasketResult | None = None


def run_config(name: str, args: argparse.Namespace, work: Path) -> ConfigResult:
    """Seed, serve, load, anonymous visits: one configuration from start to end."""
    instance, logs = work / name, work / "logs"
    problems: list[str] = []
    with BACKENDS[name](instance) as backend:
        seed_users(instance, backend, args.users)
        bench.BACKEND_ENV.update(backend.settings)
        try:
            with bench.Server(bench.webapp(instance), logs, WORKERS, name, problems) as server:
                progress(f"{backend.label}: gunicorn {WORKERS} on 127.0.0.1:{server.port}")
                users = [User(server.port, n, Tally()) for n in range(args.users)]
                load = run_load(server.port, users, args)
                anonymous = baskets = None
                if args.anonymous > 0:
                    anonymous = run_anonymous(server.port, users, backend, args)
                if args.anonymous_baskets > 0:
                    baskets = run_anonymous_baskets(server.port, users, backend, args)
        finally:
            bench.BACKEND_ENV.clear()
    return ConfigResult(backend.label, load, anonymous, problems, baskets)


# the report --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def latency(values: list[float]) -> str:
    return f"{ms(statistics.median(values) if values else None)} / {ms(percentile(values, 0.99))}"


@dataclass
class Row:
    label: str
    value: Callable[[ConfigResult], str]
    #: For a checked row: the number that must be 0 (None: not applicable to this result).
    missed: Callable[[ConfigResult], int | None] | None = None
    target: str = "0"  # shown in the target column of a checked row


def _anon(get: Callable[[AnonymousResult], Any]) -> Callable[[ConfigResult], Any]:
    return lambda r: get(r.anonymous) if r.anonymous is not None else None


def _basket(get: Callable[[BasketResult], Any]) -> Callable[[ConfigResult], Any]:
    return lambda r: get(r.baskets) if r.baskets is not None else None


def _text(get: Callable[[ConfigResult], Any]) -> Callable[[ConfigResult], str]:
    def shown(result: ConfigResult) -> str:
        value = get(result)
        return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)

    return shown


def _warm(get: Callable[[Tally], Any]) -> Callable[[ConfigResult], Any]:
    return lambda r: get(r.load.warm_up.tally)


def _timed(get: Callable[[Tally], Any]) -> Callable[[ConfigResult], Any]:
    return lambda r: get(r.load.tally)


def checked(label: str, get: Callable[[ConfigResult], int]) -> Row:
    """A count that must be 0."""
    return Row(label, _text(get), get)


def rate(count: int, seconds: float) -> str:
    return f"{count:,} ({count / seconds:.1f}/s)" if seconds > 0 else f"{count:,}"


def signed_in_during(result: ConfigResult) -> str:
    samples = result.load.signed_in
    return f"{min(samples):,} / {statistics.fmean(samples):,.0f}" if samples else "-"


ROWS = [
    Row(
        "warm-up: users signed in, time",
        lambda r: f"{r.load.users:,} in {r.load.warm_up.seconds:.0f} s",
    ),
    Row(
        "warm-up: sign-ins (per second)",
        lambda r: rate(r.load.warm_up.tally.sign_ins, r.load.warm_up.seconds),
    ),
    Row("warm-up: requests", _text(_warm(lambda t: t.requests))),
    Row(
        "warm-up: latency p50 / p99 (all but sign-in POSTs)", _warm(lambda t: latency(t.latencies))
    ),
    Row("warm-up: sign-in POST p50 / p99", _warm(lambda t: latency(t.sign_in_latencies))),
    Row("warm-up: wait at the sign-in door p50 / p99", _warm(lambda t: latency(t.sign_in_waits))),
    checked("warm-up: 5xx", _warm(lambda t: t.server_errors)),
    checked("warm-up: other unexpected answers", _warm(lambda t: t.unexpected)),
    checked("warm-up: requests with no answer", _warm(lambda t: t.failed)),
    checked("warm-up: sessions that should be valid but are not", _warm(lambda t: t.lost_sessions)),
    checked("warm-up: responses with another user's data", _warm(lambda t: t.other_users_data)),
    Row(
        "warm-up: polls that set a cookie / old name or email shown",
        _warm(lambda t: f"{t.poll_cookies} / {t.stale_profile}"),
        _warm(lambda t: t.poll_cookies + t.stale_profile),
    ),
    Row(
        "timed load: simulated users, time",
        lambda r: f"{r.load.users:,} for {r.load.seconds:.0f} s",
    ),
    Row(
        "users signed in at the start of the timed load",
        _text(lambda r: r.load.signed_in_at_start),
        lambda r: r.load.users - r.load.signed_in_at_start,
        target="all",
    ),
    Row("signed in during the timed load: min / average", signed_in_during),
    Row("requests", _text(_timed(lambda t: t.requests))),
    Row("req/s", lambda r: f"{r.load.tally.requests / r.load.seconds:,.0f}"),
    Row("latency p50 / p99 (all but sign-in POSTs)", _timed(lambda t: latency(t.latencies))),
    Row("sign-outs", _text(_timed(lambda t: t.sign_outs))),
    Row("sign-ins (per second)", lambda r: rate(r.load.tally.sign_ins, r.load.seconds)),
    Row("sign-in POST p50 / p99", _timed(lambda t: latency(t.sign_in_latencies))),
    Row("wait at the sign-in door p50 / p99", _timed(lambda t: latency(t.sign_in_waits))),
    Row("profile changes", _text(_timed(lambda t: t.profile_changes))),
    checked("5xx", _timed(lambda t: t.server_errors)),
    checked("other unexpected answers", _timed(lambda t: t.unexpected)),
    checked("requests with no answer", _timed(lambda t: t.failed)),
    checked("sessions that should be valid but are not", _timed(lambda t: t.lost_sessions)),
    checked("responses with another user's data", _timed(lambda t: t.other_users_data)),
    checked("signed-out sessions still valid", _timed(lambda t: t.ended_still_valid)),
    checked("old name or email shown after a change", _timed(lambda t: t.stale_profile)),
    checked("polls that set a cookie", _timed(lambda t: t.poll_cookies)),
    Row(
        "anonymous visits (/login, /signup, /)",
        _text(
            _anon(lambda a: f"{a.visits:,} in {a.seconds:.0f} s ({a.visits / a.seconds:,.0f}/s)")
        ),
    ),
    Row(
        "anonymous visits short of --anonymous (wrk's time bound)",
        _text(_anon(lambda a: max(0, a.asked - a.visits))),
        _anon(lambda a: max(0, a.asked - a.visits)),
    ),
    Row(
        "anonymous: not 200, or no answer",
        _text(_anon(lambda a: a.wrong_status)),
        _anon(lambda a: a.wrong_status),
    ),
    Row(
        "anonymous: CSRF cookie set / session cookie set",
        _text(_anon(lambda a: f"{a.csrf_cookies:,} / {a.session_cookies:,}")),
        _anon(lambda a: a.session_cookies),
    ),
    Row(
        "anonymous: responses with a user's data",
        _text(_anon(lambda a: a.user_data)),
        _anon(lambda a: a.user_data),
    ),
    Row(
        "store entries before -> after the anonymous visits",
        _text(_anon(lambda a: f"{a.entries_before:,} -> {a.entries_after:,}")),
    ),
    Row(
        "store growth",
        _text(_anon(lambda a: a.entries_after - a.entries_before)),
        _anon(lambda a: abs(a.entries_after - a.entries_before)),
    ),
    Row(
        "store entries that are no signed-in session",
        _text(_anon(lambda a: a.entries_before - a.signed_in)),
        _anon(lambda a: abs(a.entries_before - a.signed_in)),
    ),
    Row(
        "signed-in sessions (polling, then all checked) not valid",
        _text(_anon(lambda a: f"{a.tally.lost_sessions} of {a.signed_in}")),
        _anon(lambda a: a.tally.lost_sessions),
    ),
    Row(
        "their 5xx, other unexpected, no answer, others' data",
        _text(
            _anon(
                lambda a: (
                    f"{a.tally.server_errors} / {a.tally.unexpected} / {a.tally.failed} / "
                    f"{a.tally.other_users_data}"
                )
            )
        ),
        _anon(
            lambda a: (
                a.tally.server_errors
                + a.tally.unexpected
                + a.tally.failed
                + a.tally.other_users_data
                + a.tally.poll_cookies
                + a.tally.stale_profile
            )
        ),
    ),
    Row(
        "anonymous baskets (POST /basket/items, one product each)",
        _text(
            _basket(lambda b: f"{b.visits:,} in {b.seconds:.0f} s ({b.visits / b.seconds:,.0f}/s)")
        ),
    ),
    Row(
        "anonymous baskets short of --anonymous-baskets (wrk's time bound)",
        _text(_basket(lambda b: max(0, b.asked - b.visits))),
        _basket(lambda b: max(0, b.asked - b.visits)),
    ),
    Row(
        "anonymous baskets: latency p50 / p99",
        _text(_basket(lambda b: f"{ms(b.p50_ms)} / {ms(b.p99_ms)}")),
    ),
    Row(
        "anonymous baskets: not 303, or no answer",
        _text(_basket(lambda b: b.wrong_status)),
        _basket(lambda b: b.wrong_status),
    ),
    Row(
        "anonymous baskets: session cookies set",
        _text(_basket(lambda b: b.session_cookies)),
        _basket(lambda b: abs(b.session_cookies - b.visits)),
        target="one each",
    ),
    Row(
        "anonymous baskets: responses with a user's data",
        _text(_basket(lambda b: b.user_data)),
        _basket(lambda b: b.user_data),
    ),
    Row(
        "store entries before -> after the baskets",
        _text(_basket(lambda b: f"{b.entries_before:,} -> {b.entries_after:,}")),
    ),
    Row(
        "store growth minus baskets (wrk's requests in flight when it stopped)",
        _text(_basket(lambda b: b.entries_after - b.entries_before - b.visits)),
        _basket(lambda b: not 0 <= b.entries_after - b.entries_before - b.visits <= b.in_flight),
        target="0 to -c",
    ),
    Row(
        "entries not expired a day later (seconds to find them)",
        _text(
            _basket(
                lambda b: f"{b.entries_at_due_count - b.due_in_a_day:,} ({b.count_seconds:.1f} s)"
            )
        ),
        _basket(lambda b: b.entries_at_due_count - b.due_in_a_day),
    ),
    Row(
        "signed-in sessions (polling, then all checked) not valid",
        _text(_basket(lambda b: f"{b.tally.lost_sessions} of {b.signed_in}")),
        _basket(lambda b: b.tally.lost_sessions),
    ),
    Row(
        "their poll latency p50 / p99 during the baskets",
        _text(_basket(lambda b: latency(b.tally.latencies))),
    ),
    Row(
        "their 5xx, other unexpected, no answer, others' data",
        _text(
            _basket(
                lambda b: (
                    f"{b.tally.server_errors} / {b.tally.unexpected} / {b.tally.failed} / "
                    f"{b.tally.other_users_data}"
                )
            )
        ),
        _basket(
            lambda b: (
                b.tally.server_errors
                + b.tally.unexpected
                + b.tally.failed
                + b.tally.other_users_data
                + b.tally.poll_cookies
                + b.tally.stale_profile
            )
        ),
    ),
]


def report(results: list[ConfigResult]) -> tuple[list[str], list[str]]:
    """The table (a row per figure, a column per configuration, the target) and the missed
    targets with examples."""
    headers = ["", *(result.label for result in results), "target"]
    rows, missed = [], []
    for row in ROWS:
        rows.append([row.label, *(row.value(r) for r in results), row.target if row.missed else ""])
        for result in results:
            if row.missed is not None and (row.missed(result) or 0) != 0:
                missed.append(f"{result.label}: {row.label}: {row.value(result)}")
    for result in results:
        missed += [f"{result.label}: {problem}" for problem in result.problems]
        tallies = [result.load.warm_up.tally, result.load.tally]
        tallies += [result.anonymous.tally] if result.anonymous else []
        tallies += [result.baskets.tally] if result.baskets else []
        for tally in tallies:
            missed += [f"{result.label}: e.g. {example}" for example in tally.examples]
    return bench.table(headers, rows), missed


def stress(args: argparse.Namespace) -> tuple[list[ConfigResult], list[str], list[str]]:
    """Run the selected configurations; the results, the table, the missed targets."""
    work = Path(tempfile.mkdtemp(prefix="webapp-stress-"))
    try:
        (work / "logs").mkdir()
        names = ["files", "distributed"] if args.config == "both" else [args.config]
        results = [run_config(name, args, work) for name in names]
    finally:
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    lines, missed = report(results)
    return results, lines, missed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--duration", type=int, default=120, help="seconds of timed load per configuration")
    add("--users", type=int, default=500, help="simulated users (default 500)")
    add("--config", choices=["files", "distributed", "both"], default="both")
    add("--anonymous", type=int, default=100_000, help="anonymous visits per configuration")
    add(
        "--anonymous-baskets",
        type=int,
        default=100_000,
        help="anonymous visitors per configuration who each put a product in a basket",
    )
    add("--sign-in-concurrency", type=int, default=4, help="sign-in POSTs in flight at most")
    add(
        "--warm-up-limit",
        type=float,
        default=600,
        help="fail if not every user is signed in after this many seconds (default 600: a "
        "bound against a stuck run, twice what 500 sign-ins take on a busy 2-CPU machine)",
    )
    add(
        "--sign-out-share",
        type=float,
        default=0.25,
        help="share of the users that sign out once during the timed load, and back in",
    )
    add("--wrk-connections", type=int, default=32, help="wrk -c for the anonymous visits")
    add("--markdown", metavar="PATH", help="also write the report as markdown to PATH")
    add("--keep", action="store_true", help="keep the temporary folder (logs, instance)")
    args = parser.parse_args(argv)
    if args.users < 1 or args.users > 10_000 or args.duration < 1 or args.anonymous < 0:
        parser.error("--users must be 1 to 10000, --duration positive, --anonymous >= 0")
    if args.anonymous_baskets < 0:
        parser.error("--anonymous-baskets must be >= 0")
    if args.warm_up_limit <= 0 or not 0 <= args.sign_out_share <= 1:
        parser.error("--warm-up-limit must be positive, --sign-out-share 0 to 1")
    return args


def main(argv: list[str] | None = None) -> int:
    if Path(sys.prefix).resolve() != bench.VENV.resolve():
        print(f"run me with {bench.BIN / 'python'} (make stress does)", file=sys.stderr)
        return 1
    args = parse_args(argv)
    if args.anonymous or args.anonymous_baskets:
        bench.ensure_wrk()
    try:
        with bench.interruptible():
            other_load = bench.busy_cpu()
            progress(f"other programs keep {other_load:.0%} of the CPU busy")
            _results, lines, missed = stress(args)
            after = bench.busy_cpu()
    except (StressError, bench.BenchError) as error:
        print(f"stress failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stress interrupted", file=sys.stderr)
        return 130
    notes = [
        f"Machine: {bench.machine()}.",
        f"Server: gunicorn {WORKERS} (gunicorn.conf.py otherwise), Argon2 at its default cost. "
        f"Each user is a thread with its own cookie jar and a new connection per request; "
        f"think times 1-4 s; sign-in POSTs at most {args.sign_in_concurrency} in flight "
        "(Argon2 runs on one thread per worker: sign-ins per second bound how fast users get "
        "in). Warm-up: every user signs in through the form while those already in poll; the "
        "timed load begins once all are in. During it, "
        f"{args.sign_out_share:.0%} of the users (the same ones on each store) sign out once, "
        "at a random time in its first three quarters, and sign back in after 2-8 s.",
        f"Other programs' CPU load (sampled while the harness ran nothing): {other_load:.0%} "
        f"before, {after:.0%} after.",
    ]
    if max(other_load, after) > bench.BUSY:
        notes.append("WARNING: the machine was busy with other programs.")
    checks = [f"CHECK FAILED: {text}" for text in missed]
    print()
    print("\n".join([*lines, "", *notes, *checks]))
    if args.markdown:
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        document = [f"## make stress ({when})", "", *lines, "", *(f"- {t}" for t in notes + checks)]
        Path(args.markdown).write_text("\n".join(document) + "\n")
        progress(f"wrote {args.markdown}")
    progress(f"done in {time.monotonic() - bench.STARTED:.0f} s")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
