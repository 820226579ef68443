"""`make bench`: what a /session poll costs under gunicorn, measured with wrk.

Starts the app as `make run` does (gunicorn.conf.py, through tests/support/gunicorn.py) on a
free loopback port, from a fresh instance folder, with the bench's counters and a bare route
inside it (bench/counted_app.py); beside it, with the same gunicorn settings, a bare Flask app
(bench/bare_app.py: one JSON route, the baseline of every ratio) and the same poll in
Flask-Login + Flask-Session as their documentation sets them up (bench/reference_app.py).
It signs in over HTTP and measures, in interleaved rounds reporting medians:

- the bare Flask app, the bare route inside webapp, and polls (JSON, fragment, unchanged →
  204) with a fresh session and with an idle tab's session (older than TOUCH_INTERVAL: its
  cached user has expired, and polls never refresh it), and the reference app's poll;
- the JSON poll while sign-ins (Argon2 at its default cost) run at full speed;
- per request, counted by the app on a one-worker server (the counters are per process):
  store writes, database queries and writes; and the Set-Cookie headers on the responses;
- the JSON poll with about a hundred stored sessions and with 100,000;
- then, in-process (bench/instructions.py): instructions per request counted by
  callgrind, and CPU time per request, for the same scenarios: figures this shared machine
  repeats, unlike req/s.

Each scenario runs in a pair with its baseline (the bare Flask app; the small store), back to
back, the order alternating by round; ratios are medians of those pairs.

`--compare-workers` compares gunicorn worker setups on the poll and sign-in runs instead.
Only 127.0.0.1 is contacted; every process and temporary folder is removed at the end, also
on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import html
import http.client
import http.cookies
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

# instructions.py and the apps lie beside this file, which is run as a script or loaded by its
# path; tests/support (the gunicorn launcher, throwaway Redis and PostgreSQL) one folder up
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))
import counted_app
import instructions
import reference_app
from support.gunicorn import Gunicorn, GunicornError, environment

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
LUA = Path(__file__).resolve().with_name("count.lua")

USERNAME = "bench"
PASSWORD = "bench correct horse battery staple"
#: The session cookie's name with WEBAPP_SECURE_COOKIES=false (plain HTTP on loopback).
COOKIE = "session"
LOGGED_ERROR = re.compile(r"\[(ERROR|CRITICAL)\]|ERROR in |Traceback|WORKER TIMEOUT")
CSRF_INPUT = re.compile(r'<input[^>]*\bname="csrf_token"[^>]*\bvalue="([^"]+)"')
DATA_STATE = re.compile(r'data-state="([^"]+)"')
#: wrk's own default (2 s) would count a poll queued behind sign-ins as a timeout.
WRK_TIMEOUT = "10s"
#: Worker setups `--compare-workers` tries.
COMPARED = (("sync", 2, 1), ("gthread", 2, 4), ("gthread", 4, 2))
#: Distinct session files when the store is filled; the other entries link to them.
DISTINCT_FILES = 1000
#: Other programs' CPU share above which the report warns that its numbers are skewed.
BUSY = 0.15
STARTED = time.monotonic()
#: Issue 5's targets 1 (poll >= 0.9x the bare Flask app) and 4 (p50 flat within 1.2x).
RATIO_TARGET, FLAT_TARGET = instructions.TARGET_RATIO, instructions.TARGET_FLAT


class BenchError(Exception):
    """Something the benchmark cannot go on without; reported without a traceback."""


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


# HTTP: http.client straight to 127.0.0.1 (urllib would honour *_proxy variables) -------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def set_cookies(self) -> list[str]:
        return [value for name, value in self.headers if name.lower() == "set-cookie"]

    def cookies(self) -> dict[str, str]:
        """The cookies the response sets, by name."""
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        for header in self.set_cookies():
            jar.load(header)
        return {name: morsel.value for name, morsel in jar.items()}


def fetch(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    timeout: float = 60,
) -> Response:
    """One request on its own connection."""
    headers = dict(headers or {})
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return Response(answer.status, answer.getheaders(), answer.read())
    finally:
        connection.close()


def cookie_header(sid: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={sid}"}


def sign_in(port: int) -> str:
    """GET /login for its CSRF token and cookies, POST the form with them: the new session id."""
    page = fetch(port, "/login")
    token = CSRF_INPUT.search(page.text)
    if page.status != 200 or token is None:
        raise BenchError(f"GET /login: status {page.status}, no csrf_token input")
    cookies = "; ".join(f"{name}={value}" for name, value in page.cookies().items())
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": html.unescape(token[1])}
    answer = fetch(port, "/login", method="POST", headers={"Cookie": cookies}, form=form)
    sid = answer.cookies().get(COOKIE)
    if answer.status != 303 or not sid:
        raise BenchError(f"POST /login: status {answer.status}, expected 303 and a new session")
    return sid


def signed_in_user(port: int, sid: str) -> dict[str, Any]:
    """The user /session shows for this session id; BenchError when it shows nobody."""
    answer = fetch(port, "/session", headers=cookie_header(sid))
    user = json.loads(answer.body).get("user") if answer.status == 200 else None
    if not user:
        raise BenchError(f"GET /session: status {answer.status}, not signed in: {answer.text}")
    return user


def widget_state(port: int, sid: str) -> str:
    """The state token the widget would send back (X-Session-State)."""
    answer = fetch(port, "/session", headers={**cookie_header(sid), "HX-Request": "true"})
    match = DATA_STATE.search(answer.text)
    if answer.status != 200 or match is None:
        raise BenchError(f"GET /session (htmx): status {answer.status}, no data-state")
    return match[1]


# gunicorn ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workers:
    kind: str
    workers: int
    threads: int

    def __str__(self) -> str:
        if self.kind == "gthread":
            return f"gthread {self.workers}x{self.threads}"
        return f"{self.kind} {self.workers}"

    def args(self) -> list[str]:
        # gunicorn turns a sync worker with threads > 1 into gthread: keep it sync.
        threads = self.threads if self.kind == "gthread" else 1
        return ["--worker-class", self.kind, f"--threads={threads}"]


#: Settings of the configuration under test: empty for the embedded one (files + SQLite);
#: Redis and PostgreSQL URLs during the distributed run.
BACKEND_ENV: dict[str, str] = {}


def app_environment(instance: Path) -> dict[str, str]:
    """The caller's environment without its webapp and gunicorn settings, plus the bench's."""
    return environment(
        WEBAPP_INSTANCE_PATH=str(instance), WEBAPP_SECURE_COOKIES="false", **BACKEND_ENV
    )


def create_user(instance: Path) -> None:
    """Through the documented CLI; it also creates the database."""
    progress(f"creating user {USERNAME} in {instance.name}")
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "webapp", "users", "create", USERNAME, "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=app_environment(instance),
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"users create failed:\n{result.stdout}{result.stderr}")


@dataclass(frozen=True)
class Served:
    """What a Server runs: gunicorn's app argument (found in bench/), its environment, and a
    path that answers 200 once it serves."""

    app: str
    env: dict[str, str]
    ready_path: str = "/healthz"


def webapp(instance: Path) -> Served:
    """The app as `make run` serves it, plus the bench's counters (bench/counted_app.py)."""
    return Served(counted_app.WSGI_APP, app_environment(instance))


def bare_flask() -> Served:
    """The baseline: one JSON route and nothing else (bench/bare_app.py)."""
    return Served("bare_app:app", environment(), "/")


def reference(folder: Path) -> Served:
    """Flask-Login + Flask-Session as documented (bench/reference_app.py), its user created."""
    reference_app.prepare(folder, USERNAME, PASSWORD)
    return Served(f"reference_app:create_app({str(folder)!r})", environment(), "/login")


class Server:
    """An app under gunicorn as `make run` starts it (gunicorn.conf.py, the workers given) on
    a free loopback port. When it stops, worker restarts and errors in its log are added to
    `problems`."""

    def __init__(
        self, served: Served, logs: Path, workers: Workers, label: str, problems: list[str]
    ) -> None:
        self.workers, self.label, self.problems = workers, label, problems
        self.gunicorn = Gunicorn(
            logs,
            served.env,
            workers=workers.workers,
            name=label,
            app=served.app,
            args=[*workers.args(), "--pythonpath", str(HERE)],
            ready_path=served.ready_path,
            bin_dir=BIN,
        )
        self.port = 0

    def __enter__(self) -> Server:
        try:
            self.port = self.gunicorn.start().port
        except GunicornError as error:
            raise BenchError(f"{self.label} server: {error}") from None
        return self

    def __exit__(self, *_exc: object) -> None:
        self.gunicorn.stop()
        if (restarts := len(self.gunicorn.worker_pids()) - self.workers.workers) > 0:
            self.problems.append(f"{self.label} server: {restarts} workers were restarted")
        errors = [line for line in self.gunicorn.errors().splitlines() if LOGGED_ERROR.search(line)]
        if errors:
            self.problems.append(f"{self.label} server logged {len(errors)} errors: {errors[0]}")


# the session store, through the app's own objects ------------------------------------------


@functools.cache
def bench_app(instance: Path) -> Any:
    """The app in this process, on the servers' instance folder and with their defaults."""
    from webapp import create_app

    return create_app({"INSTANCE_PATH": str(instance)})


def store_entries(instance: Path) -> int:
    """Entries in the filesystem store (cachelib's half-written temporaries excluded)."""
    with os.scandir(instance / "sessions") as entries:
        return sum(1 for entry in entries if not entry.name.endswith(".__wz_cache"))


def copy_sessions(instance: Path, sid: str, count: int, *, older_by: float = 0) -> str:
    """Store `count` copies of the stored session `sid` under new ids; the last new id.

    Each copy gets a new CSRF token and every timestamp in it (a number within a day of now)
    moved `older_by` seconds back: a session as it is that much later when only polls came
    (they never write). It is written by the store's own `set` (a sealed entry under its
    own key, expiring as the session's idle timeout says) and gets its row in the session
    index. Past DISTINCT_FILES, copies are hard links to the first ones, only to fill the
    folder: a poll's lookup walks the folder's names, not its inodes, and creating a file
    costs ~200 us on this VM's ext4 (100,000: over 20 s, and as long to delete) against
    ~15 us for a link. Such a link is no session (its seal names another key: read, it
    would be deleted as damaged); no poll reads one, and the ids they stand for are not
    returned, only the last distinct copy's.
    """
    from sqlalchemy import insert

    from webapp.db import get_db
    from webapp.models import UserSession
    from webapp.sessions.store import session_interface, sid_hash

    app = bench_app(instance)
    interface = session_interface(app)
    cache = interface.cache
    stored = cache.get(interface._get_store_id(sid))
    if not isinstance(stored, dict) or "_user_id" not in stored:
        raise BenchError(f"session {sid[:8]}... is not a signed-in session in the store: {stored}")
    now = time.time()

    def older(value: Any) -> Any:
        timestamp = isinstance(value, int | float) and not isinstance(value, bool)
        return value - older_by if timestamp and abs(value - now) < 86400 else value

    template = {key: older(value) for key, value in stored.items()}
    lifetime = max(int(app.config["IDLE_TIMEOUT"] - older_by), 1)
    active = dt.datetime.fromtimestamp(now - older_by, dt.UTC)
    rows, files, new_sid, last_distinct = [], [], "", ""
    for number in range(count):
        sid_now = interface._generate_sid(interface.sid_length)
        store_id = interface._get_store_id(sid_now)
        if number < DISTINCT_FILES:
            data = {**template, "csrf_token": secrets.token_hex(20)}
            cache.set(store_id, data, timeout=lifetime)
            files.append(cache._get_filename(store_id))
            last_distinct = sid_now
        else:
            os.link(files[number % DISTINCT_FILES], cache._get_filename(store_id))
        new_sid = sid_now
        rows.append(
            {
                "id": secrets.token_hex(8),
                "sid_hash": sid_hash(new_sid),
                "user_id": int(template["_user_id"]),
                "created_at": active,
                "last_active_at": active,
                "ip": "127.0.0.1",
                "user_agent": "webapp bench",
            }
        )
    new_sid = last_distinct or new_sid
    if cache.get(interface._get_store_id(new_sid)) is None:
        raise BenchError("the store does not read back a session the bench wrote")
    with app.app_context():
        db = get_db()
        table = UserSession.metadata.tables[UserSession.__tablename__]
        db.connection().execute(insert(table), rows)
        db.commit()
    return new_sid


def fill_store(instance: Path, sid: str, target: int) -> str | None:
    """Copies of session `sid` until the store holds `target` entries; one new id, if any."""
    missing = target - store_entries(instance)
    return copy_sessions(instance, sid, missing) if missing > 0 else None


# sessions for the scenarios ----------------------------------------------------------------

#: No cookie.
ANONYMOUS = "anonymous"
#: Signed in recently enough that the user cached in the session stays younger than
#: TOUCH_INTERVAL for the whole run, so the poll needs nothing but the store entry.
FRESH = "fresh"
#: Seconds of slack before a fresh session's cached user would expire.
FRESH_SLACK = 5
#: A session after more than TOUCH_INTERVAL of polls only, as every tab left open for a
#: minute has: the cached user has expired, and polls never write to renew it.
IDLE = "idle tab"


class Sessions:
    """The cookie (and state token) for each scenario's run on one server."""

    def __init__(self, port: int, instance: Path) -> None:
        self.port, self.instance = port, instance
        self._idle: str | None = None
        self._fresh: tuple[str, float] | None = None

    def fresh(self, duration: float) -> str:
        """A session whose cached user outlives a run of `duration` seconds (one sign-in
        serves several runs: Argon2 is slow by design)."""
        touch = bench_app(self.instance).config["TOUCH_INTERVAL"]
        now = time.monotonic()
        if self._fresh is None or now - self._fresh[1] + duration + FRESH_SLACK >= touch:
            self._fresh = (sign_in(self.port), now)
        return self._fresh[0]

    def idle(self) -> str:
        if self._idle is None:
            older_by = bench_app(self.instance).config["TOUCH_INTERVAL"] + 1
            self._idle = copy_sessions(self.instance, sign_in(self.port), 1, older_by=older_by)
        return self._idle

    def headers(self, scenario: Scenario, duration: float) -> dict[str, str]:
        """For a run of `duration` seconds."""
        if scenario.session == ANONYMOUS:
            return {}
        sid = self.fresh(duration) if scenario.session == FRESH else self.idle()
        headers = cookie_header(sid)
        if scenario.htmx:
            headers["HX-Request"] = "true"
        if scenario.state:
            headers["X-Session-State"] = widget_state(self.port, sid)
        return headers


class Client(Protocol):
    """A server, and what each scenario's run sends it."""

    port: int

    def headers(self, scenario: Scenario, duration: float) -> dict[str, str]: ...


@dataclass
class Fixed:
    """A server whose runs all send the same headers: none to the bare Flask app, the
    signed-in cookie to the reference app (whose sessions never expire during a bench:
    permanent, 31 days, renewed by every request)."""

    port: int
    sent: dict[str, str]

    def headers(self, _scenario: Scenario, _duration: float) -> dict[str, str]:
        return self.sent


def sign_in_reference(port: int) -> dict[str, str]:
    """POST /login to the reference app (bench/reference_app.py): its session cookie."""
    form = {"username": USERNAME, "password": PASSWORD}
    answer = fetch(port, "/login", method="POST", form=form)
    sid = answer.cookies().get(COOKIE)
    if answer.status != 303 or not sid:
        raise BenchError(f"reference POST /login: status {answer.status}, no session cookie")
    return cookie_header(sid)


# wrk ---------------------------------------------------------------------------------------


def ensure_wrk() -> None:
    """Install Debian's wrk when missing and running as root; otherwise say what to install."""
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0:
        progress("wrk is missing: installing the Debian package wrk")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
        if shutil.which("wrk"):
            return
    print("make bench needs wrk: sudo apt-get install wrk", file=sys.stderr)
    raise SystemExit(1)


@dataclass(frozen=True)
class Load:
    """wrk's settings for every run."""

    threads: int
    connections: int
    duration: int


@dataclass
class WrkResult:
    """What count.lua prints for one wrk run (plus the sign-in rate during it, if any)."""

    requests: int
    duration_us: int
    bytes: int
    p50_us: int
    p99_us: int
    set_cookie: int
    socket_errors: int
    timeouts: int
    statuses: dict[str, int]
    sign_ins_per_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def bytes_per_response(self) -> float:
        return self.bytes / max(self.requests, 1)

    def unexpected(self, expect: int) -> int:
        """Responses with another status than `expect`, plus socket errors and timeouts."""
        wrong = sum(n for status, n in self.statuses.items() if int(status) != expect)
        return wrong + self.socket_errors + self.timeouts

    def brief(self) -> str:
        text = f"{self.rps:,.0f} req/s, p50 {ms(self.p50_us)}, p99 {ms(self.p99_us)}"
        if self.sign_ins_per_s is not None:
            text += f", {self.sign_ins_per_s:.1f} sign-ins/s"
        return text


def run_wrk(port: int, path: str, headers: dict[str, str], load: Load, duration: int) -> WrkResult:
    command = [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(LUA),
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return WrkResult(**json.loads(line.removeprefix("BENCH_RESULT ")))
    raise BenchError(f"wrk gave no result ({result.returncode}):\n{result.stdout}{result.stderr}")


def ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.2f} ms"


# sign-ins at full speed --------------------------------------------------------------------


class SignIns:
    """Threads signing in as fast as they can, each GET /login then POST /login (a fresh
    CSRF token every time, and a new session id), while something else is measured."""

    def __init__(self, port: int, threads: int) -> None:
        self.port, self.count, self.failures = port, 0, 0
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [
            threading.Thread(target=self._run, daemon=True, name=f"sign-in-{number}")
            for number in range(threads)
        ]

    def __enter__(self) -> SignIns:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sign_in(self.port)
            except (BenchError, OSError, http.client.HTTPException):
                with self._lock:
                    self.failures += 1
            else:
                with self._lock:
                    self.count += 1


# the scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    label: str
    path: str
    expect: int  # the status every response must have
    session: str = ANONYMOUS
    htmx: bool = False
    state: bool = False  # send the state token the widget shows: unchanged → 204
    sign_ins: bool = False  # run while threads sign in at full speed
    counted: bool = True  # in webapp's per-request counts (the same request as another row: no)
    server: str = "webapp"  # or "bare" (bench/bare_app.py), "reference" (bench/reference_app.py)


#: The baseline of every ratio: Flask and gunicorn answering JSON, nothing else.
BARE_FLASK = Scenario("bare Flask app", "/", 200, counted=False, server="bare")
#: A JSON route inside webapp, behind its hooks and middleware (a kinder baseline, shown only).
BARE = Scenario("bare route in webapp (/__bench/bare)", "/__bench/bare", 200)
POLL_JSON = Scenario("poll JSON", "/session", 200, FRESH)
DURING_SIGN_INS = Scenario(
    "poll JSON during sign-ins", "/session", 200, FRESH, sign_ins=True, counted=False
)
POLL_FRAGMENT = Scenario("poll fragment", "/session", 200, FRESH, htmx=True)
POLL_204 = Scenario("poll unchanged (204)", "/session", 204, FRESH, htmx=True, state=True)
#: The same poll in Flask-Login + Flask-Session as documented: refreshed on every request.
REFERENCE = Scenario(
    "Flask-Login + Flask-Session poll", "/session", 200, FRESH, counted=False, server="reference"
)
#: The polls target 1 names: JSON, fragment, unchanged.
TARGET_ONE = [POLL_JSON.label, POLL_FRAGMENT.label, POLL_204.label]
SCENARIOS = [
    BARE_FLASK,
    BARE,
    POLL_JSON,
    POLL_FRAGMENT,
    POLL_204,
    Scenario(f"poll JSON, {IDLE}", "/session", 200, IDLE),
    Scenario(f"poll unchanged (204), {IDLE}", "/session", 204, IDLE, htmx=True, state=True),
    DURING_SIGN_INS,
    REFERENCE,
]


@dataclass
class Run:
    """Settings every measurement shares."""

    load: Load
    rounds: int
    warmup: int
    sign_in_threads: int
    problems: list[str]


def measure(sessions: Client, scenario: Scenario, run: Run, duration: int) -> WrkResult:
    """One wrk run, with the scenario's session obtained just before it."""
    headers = sessions.headers(scenario, duration + 1)
    if not scenario.sign_ins:
        return run_wrk(sessions.port, scenario.path, headers, run.load, duration)
    with SignIns(sessions.port, run.sign_in_threads) as crowd:
        time.sleep(1.0)  # every thread well into its first sign-in
        before, began = crowd.count, time.monotonic()
        result = run_wrk(sessions.port, scenario.path, headers, run.load, duration)
        result.sign_ins_per_s = (crowd.count - before) / (time.monotonic() - began)
    if crowd.failures:
        run.problems.append(f"{crowd.failures} sign-ins failed during {scenario.label}")
    return result


def sign_ins_alone(port: int, run: Run) -> float:
    """Sign-ins per second with nothing else running: what the crowd gets with no polls."""
    with SignIns(port, run.sign_in_threads) as crowd:
        time.sleep(1.0)
        before, began = crowd.count, time.monotonic()
        time.sleep(run.load.duration)
        rate = (crowd.count - before) / (time.monotonic() - began)
    progress(f"sign-ins alone: {rate:.1f}/s")
    return rate


@dataclass
class Rounds:
    """Every run of each target by label, and for each run of a target the baseline's run
    made right next to it."""

    results: dict[str, list[WrkResult]]
    partners: dict[str, list[WrkResult]]

    def __getitem__(self, label: str) -> list[WrkResult]:
        return self.results[label]

    def ratio(self, label: str, value: Callable[[WrkResult], float] = lambda r: r.rps) -> float:
        """The median over pairs of the target's value over its adjacent baseline run's."""
        if label not in self.partners:
            return 1.0
        pairs = zip(self.results[label], self.partners[label], strict=True)
        return statistics.median(value(r) / value(b) for r, b in pairs)


def measure_rounds(targets: list[tuple[Client, Scenario]], run: Run) -> Rounds:
    """A warm-up run of each target, then per round each target in a pair with the first
    target (the baseline), run back to back, the order alternating from round to round:
    this machine's load drifts within seconds, so only adjacent runs compare well."""
    for sessions, scenario in targets:
        if run.warmup > 0:
            measure(sessions, scenario, run, run.warmup)
    rounds = Rounds({scenario.label: [] for _, scenario in targets}, {})
    baseline, *others = targets
    for number in range(1, run.rounds + 1):
        for target in others:
            pair = [baseline, target] if number % 2 else [target, baseline]
            measured = {}
            for sessions, scenario in pair:
                measured[scenario.label] = result = measure(
                    sessions, scenario, run, run.load.duration
                )
                rounds.results[scenario.label].append(result)
                progress(f"round {number}/{run.rounds} {scenario.label}: {result.brief()}")
                check_result(scenario, result, run)
            label = target[1].label
            rounds.partners.setdefault(label, []).append(measured[baseline[1].label])
    return rounds


def check_result(scenario: Scenario, result: WrkResult, run: Run) -> None:
    if wrong := result.unexpected(scenario.expect):
        run.problems.append(
            f"{scenario.label}: {wrong} responses were not {scenario.expect} (or failed)"
        )
    if scenario.server == "webapp" and scenario.path == "/session" and result.set_cookie:
        run.problems.append(f"{scenario.label}: {result.set_cookie} responses carried Set-Cookie")


# counted per request -----------------------------------------------------------------------


@dataclass
class Counts:
    """What one request of a scenario did, averaged over N requests."""

    store_writes: float
    set_cookie: float
    db_queries: float
    db_writes: float


def read_counts(port: int, *, reset: bool) -> dict[str, int]:
    if reset:
        fetch(port, "/__bench/counts/reset", method="POST")
    answer = fetch(port, "/__bench/counts")
    if answer.status != 200:
        raise BenchError(f"GET /__bench/counts: status {answer.status}")
    counts: dict[str, int] = json.loads(answer.body)
    return counts


def count_per_request(
    sessions: Sessions, runs: list[Scenario], n: int, run: Run
) -> dict[str, Counts]:
    """N requests of each scenario between a reset and a read of /__bench/counts, minus what
    a reset and a read count on their own. Needs a one-worker server: counters are per
    process. A sign-in at the end shows that the counters do count."""
    port = sessions.port
    baseline = read_counts(port, reset=True)
    counted = {}
    for scenario in runs:
        headers = sessions.headers(scenario, duration=10)
        fetch(port, "/__bench/counts/reset", method="POST")
        cookies = unexpected = 0
        for _ in range(n):
            answer = fetch(port, scenario.path, headers=headers)
            cookies += len(answer.set_cookies())
            unexpected += answer.status != scenario.expect
        after = read_counts(port, reset=False)
        delta = {key: (after[key] - baseline[key]) / n for key in after}
        counted[scenario.label] = Counts(
            store_writes=delta["store_writes"] + delta["store_deletes"],
            set_cookie=cookies / n,
            db_queries=delta["db_queries"],
            db_writes=delta["db_writes"],
        )
        progress(f"counted {n} x {scenario.label}: {counted[scenario.label]}")
        if unexpected:
            run.problems.append(
                f"{scenario.label}: {unexpected} of {n} counted were not {scenario.expect}"
            )
    read_counts(port, reset=True)
    sign_in(port)
    signed_in = read_counts(port, reset=False)
    if not (signed_in["store_writes"] and signed_in["db_writes"]):
        raise BenchError(f"the counters missed a sign-in's writes: {signed_in}")
    return counted


# reporting ---------------------------------------------------------------------------------


@dataclass
class Report:
    title: str
    lines: list[str]
    notes: list[str]


def median(results: list[WrkResult], value: Callable[[WrkResult], float]) -> float:
    return statistics.median(value(result) for result in results)


def median_ratio(results: list[WrkResult], baseline: list[WrkResult]) -> float:
    """The median over rounds of req/s over the baseline's req/s in the same round."""
    return statistics.median(r.rps / b.rps for r, b in zip(results, baseline, strict=True))


def number(value: float) -> str:
    """Per-request counts: whole numbers as such, fractions with two decimals."""
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table, aligned so that it reads as well in a terminal."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(headers), line(["-" * w for w in widths]), *map(line, rows)]


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    words = (wrk.stdout + wrk.stderr).split()
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("gunicorn", "Flask")
    )
    return (
        f"{len(os.sched_getaffinity(0))} CPUs (nproc), {model}; Linux {platform.release()}; "
        f"Python {platform.python_version()}, {versions}, wrk {words[1] if len(words) > 1 else '?'}"
    )


def busy_cpu(seconds: float = 1.0) -> float:
    """The machine's busy CPU share over `seconds` (/proc/stat). Sampled while the bench runs
    nothing, it is other programs' load, which skews every number here."""

    def sample() -> tuple[int, int]:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    return 1 - (idle_after - idle) / max(total_after - total, 1)


def load_line(run: Run, workers: Workers | None = None) -> str:
    load = run.load
    server = f"gunicorn {workers}, gunicorn.conf.py otherwise" if workers else "gunicorn.conf.py"
    return (
        f"Server: {server}; Argon2 at its default cost. "
        f"Load: wrk -t{load.threads} -c{load.connections}, {load.duration} s per run after "
        f"{run.warmup} s of warm-up, {run.rounds} rounds of adjacent pairs, medians. Sign-ins: "
        f"{run.sign_in_threads} client threads doing GET + POST /login in a loop."
    )


LEGEND = [
    f"Sessions: a fresh one has its user cached, younger than TOUCH_INTERVAL for the whole "
    f"run; an {IDLE}'s is the same session as it is more than TOUCH_INTERVAL "
    "later with polls only (its timestamps moved back in the store), as every tab open for "
    "over a minute sends.",
    "Ratio: the scenario's req/s over the bare Flask app's (bench/bare_app.py: one JSON route, "
    "no extension, same gunicorn settings) in the run right before or after it (the order "
    "alternates by round), median of those pairs. The Flask-Login + Flask-Session poll is "
    "bench/reference_app.py: their documented setup (cachelib file store, sessions refreshed "
    "on every request, the user loaded from SQLite per request). "
    "Store writes (upserts + deletes), DB queries and DB writes are the app's own counters "
    "(/__bench/counts) over N requests on a one-worker server; Set-Cookie is counted on those "
    "responses; bytes/response (headers + body) is wrk's bytes read over its responses.",
]


def scenario_table(title: str, results: Rounds, counts: dict[str, Counts]) -> list[str]:
    """One row per scenario: medians, the ratio to the adjacent bare runs, the counts."""
    rows = []
    for label, measured in results.results.items():
        counted = (
            [number(v) for v in vars(counts[label]).values()] if label in counts else ["-"] * 4
        )
        rows.append(
            [
                label,
                f"{median(measured, lambda r: r.rps):,.0f}",
                ms(median(measured, lambda r: r.p50_us)),
                ms(median(measured, lambda r: r.p99_us)),
                f"{results.ratio(label):.2f}x",
                *counted,
                f"{median(measured, lambda r: r.bytes_per_response):,.0f}",
            ]
        )
    headers = [title, "req/s", "p50", "p99", "ratio to bare Flask", "store writes/poll"]
    headers += ["Set-Cookie/poll", "DB queries/poll", "DB writes/poll", "bytes/response"]
    return table(headers, rows)


def main_report(
    results: Rounds,
    counts: dict[str, Counts],
    store: tuple[int, int, Rounds],
    sign_ins: tuple[int, float],
) -> list[str]:
    """The table, then the target-1, store-size and sign-in lines."""
    lines = scenario_table("scenario", results, counts)
    lines += ["", target_one(results), baselines(results)]
    small_n, big_n, sizes = store
    small, big = sizes[store_label(small_n)], sizes[store_label(big_n)]
    small_p50, big_p50 = median(small, lambda r: r.p50_us), median(big, lambda r: r.p50_us)
    flat = sizes.ratio(store_label(big_n), lambda r: r.p50_us)
    lines += [
        "",
        f"Store size: poll JSON p50 {ms(small_p50)} ({median(small, lambda r: r.rps):,.0f} "
        f"req/s) with {small_n:,} stored sessions, {ms(big_p50)} "
        f"({median(big, lambda r: r.rps):,.0f} req/s) with {big_n:,}: {flat:.2f}x the p50 "
        f"(median of adjacent pairs, one server each; target <= {FLAT_TARGET}x: "
        f"{'met' if flat <= FLAT_TARGET else 'MISSED'} by wrk).",
    ]
    alone, during = results[POLL_JSON.label], results[DURING_SIGN_INS.label]
    ratio = median_ratio(during, alone)
    rates = [r.sign_ins_per_s or 0.0 for r in during]
    threads, alone_rate = sign_ins
    lines.append(
        f"Sign-ins vs polls: {statistics.median(rates):.1f} sign-ins/s at full speed "
        f"({threads} client threads) while polled, {alone_rate:.1f}/s alone; poll JSON "
        f"{median(during, lambda r: r.rps):,.0f} req/s during sign-ins vs "
        f"{median(alone, lambda r: r.rps):,.0f} alone (same round) = {ratio:.2f}x (target >= "
        f"0.7x: {'met' if ratio >= 0.7 else 'MISSED'}); p99 "
        f"{ms(median(during, lambda r: r.p99_us))} vs {ms(median(alone, lambda r: r.p99_us))}."
    )
    return lines


# the runs ----------------------------------------------------------------------------------


def full_run(args: argparse.Namespace, work: Path, run: Run) -> Report:
    """What `make bench` reports: counts, scenarios, sign-ins vs polls, store size."""
    workers = Workers(args.worker_class, args.workers, args.threads)
    instance, logs = work / "instance", work / "logs"
    create_user(instance)
    progress(f"counting per request on a one-worker server ({args.polls} of each)")
    one = Workers("gthread", 1, 1)
    with Server(webapp(instance), logs, one, "counts", run.problems) as server:
        counted = [scenario for scenario in SCENARIOS if scenario.counted]
        counts = count_per_request(Sessions(server.port, instance), counted, args.polls, run)

    progress(f"starting gunicorn {workers}: webapp, the bare Flask app, the reference app")
    with (
        Server(webapp(instance), logs, workers, "main", run.problems) as server,
        Server(bare_flask(), logs, workers, "bare-flask", run.problems) as bare,
        Server(reference(work / "reference"), logs, workers, "reference", run.problems) as ref,
    ):
        sessions = Sessions(server.port, instance)
        clients: dict[str, Client] = {
            "webapp": sessions,
            "bare": Fixed(bare.port, {}),
            "reference": Fixed(ref.port, sign_in_reference(ref.port)),
        }
        progress(f"serving on 127.0.0.1:{server.port}, {bare.port}, {ref.port}; warming up")
        results = measure_rounds([(clients[s.server], s) for s in SCENARIOS], run)
        alone = sign_ins_alone(server.port, run)
        store = measure_store_size(args, work, workers, run, sessions)
        progress("stopping gunicorn")
    lines = main_report(results, counts, store, (run.sign_in_threads, alone))
    if not args.embedded_only:
        lines += distributed_run(args, work, run)
    notes = [load_line(run, workers), *LEGEND]
    if not args.skip_instructions:
        lines += ["", *instruction_counts(args, work)]
        notes.append(instructions.method_note())
    return Report("make bench", lines, notes)


def instruction_counts(args: argparse.Namespace, work: Path) -> list[str]:
    """The in-process table (bench/instructions.py): callgrind's instruction counts and
    CPU time per request, after every wrk run (valgrind would take a core from them)."""
    progress("instructions per request: preparing, then the app under callgrind")
    began = time.monotonic()
    try:
        measured = instructions.measure(
            work / "instructions", small=args.small_store, big=args.big_store
        )
    except RuntimeError as error:
        raise BenchError(str(error)) from None
    progress(f"instructions counted in {time.monotonic() - began:.0f} s")
    return instructions.report(measured, table)


def measure_store_size(
    args: argparse.Namespace, work: Path, workers: Workers, run: Run, small: Sessions
) -> tuple[int, int, Rounds]:
    """The JSON poll on the main server, its store topped up to --small-store, against a
    second server whose store holds --big-store sessions, in interleaved rounds."""
    fill_store(small.instance, sign_in(small.port), args.small_store)
    big_instance = work / "big-instance"
    create_user(big_instance)
    with Server(webapp(big_instance), work / "logs", workers, "big-store", run.problems) as server:
        big = Sessions(server.port, big_instance)
        began = time.monotonic()
        fake = fill_store(big_instance, sign_in(server.port), args.big_store)
        small_n, big_n = store_entries(small.instance), store_entries(big_instance)
        progress(f"store size: {big_n:,} sessions stored in {time.monotonic() - began:.1f} s")
        if fake:
            signed_in_user(server.port, fake)  # the server reads the entries the bench wrote
        few = Scenario(store_label(small_n), "/session", 200, FRESH)
        many = Scenario(store_label(big_n), "/session", 200, FRESH)
        results = measure_rounds([(small, few), (big, many)], run)
    return small_n, big_n, results


def target_one(results: Rounds) -> str:
    ratios = {label: results.ratio(label) for label in TARGET_ONE}
    lowest = min(ratios.values())
    shown = ", ".join(
        f"{label.removeprefix('poll ')} {ratio:.2f}x" for label, ratio in ratios.items()
    )
    return (
        f"Target 1 by wrk (signed-in polls >= {RATIO_TARGET}x the bare Flask app, median of "
        f"adjacent pairs): {shown}: {'met' if lowest >= RATIO_TARGET else 'MISSED'}."
    )


def baselines(results: Rounds) -> str:
    """The kinder baseline (webapp's own bare route) and the documented setup, against the
    bare Flask app in the same run."""
    reference = results[REFERENCE.label]
    cookies = sum(r.set_cookie for r in reference) / max(sum(r.requests for r in reference), 1)
    json_poll, documented = results.ratio(POLL_JSON.label), results.ratio(REFERENCE.label)
    return (
        f"Baselines, same run: the bare route inside webapp (behind its hooks and middleware) "
        f"{results.ratio(BARE.label):.2f}x the bare Flask app; the same poll in Flask-Login + "
        f"Flask-Session as documented (refreshed on every request: a store write and "
        f"{cookies:.2f} Set-Cookie per response) {documented:.2f}x, so webapp's JSON poll "
        f"does {json_poll / documented:.2f}x its req/s."
    )


def store_label(stored: int) -> str:
    return f"poll JSON, {stored:,} sessions"


def distributed_run(args: argparse.Namespace, work: Path, run: Run) -> list[str]:
    """The main scenarios again on Redis + PostgreSQL (throwaway servers on loopback), with
    their own bare route in the same run."""
    from support.postgres import running_postgres
    from support.redis_server import redis_server

    # the idle tab copies store files; the reference app has no Redis + PostgreSQL setup
    scenarios = [BARE_FLASK, BARE, POLL_JSON, POLL_FRAGMENT, POLL_204]
    workers = Workers(args.worker_class, args.workers, args.threads)
    instance, logs = work / "distributed", work / "logs"
    with redis_server() as redis, running_postgres() as postgres:
        progress(f"Redis on {redis.url}, PostgreSQL on {postgres.url}")
        BACKEND_ENV.update(
            WEBAPP_SESSION_BACKEND="redis",
            WEBAPP_REDIS_URL=redis.url,
            WEBAPP_DATABASE_URL=postgres.url,
        )
        try:
            create_user(instance)
            one = Workers("gthread", 1, 1)
            with Server(webapp(instance), logs, one, "distributed-counts", run.problems) as server:
                counted = [scenario for scenario in scenarios if scenario.counted]
                counts = count_per_request(
                    Sessions(server.port, instance), counted, args.polls, run
                )
            with (
                Server(webapp(instance), logs, workers, "distributed", run.problems) as server,
                Server(bare_flask(), logs, workers, "distributed-bare", run.problems) as bare,
            ):
                clients: dict[str, Client] = {
                    "webapp": Sessions(server.port, instance),
                    "bare": Fixed(bare.port, {}),
                }
                fewer = dataclasses.replace(run, rounds=args.distributed_rounds)
                results = measure_rounds([(clients[s.server], s) for s in scenarios], fewer)
        finally:
            BACKEND_ENV.clear()
    return ["", *scenario_table("Redis + PostgreSQL", results, counts)]


def compare_workers(args: argparse.Namespace, work: Path, run: Run) -> Report:
    """Polls alone and during sign-ins per worker setup, to choose the default on evidence."""
    instance, logs = work / "instance", work / "logs"
    create_user(instance)
    rows = []
    for kind, count, threads in COMPARED:
        workers = Workers(kind, count, threads)
        progress(f"starting gunicorn {workers}")
        label = f"compare-{kind}-{count}x{threads}"
        with Server(webapp(instance), logs, workers, label, run.problems) as server:
            sessions = Sessions(server.port, instance)
            results = measure_rounds([(sessions, POLL_JSON), (sessions, DURING_SIGN_INS)], run)
        alone, during = results[POLL_JSON.label], results[DURING_SIGN_INS.label]
        ratio = results.ratio(DURING_SIGN_INS.label)
        rows.append(
            [
                str(workers),
                f"{median(alone, lambda r: r.rps):,.0f}",
                ms(median(alone, lambda r: r.p50_us)),
                ms(median(alone, lambda r: r.p99_us)),
                f"{median(during, lambda r: r.rps):,.0f}",
                ms(median(during, lambda r: r.p50_us)),
                ms(median(during, lambda r: r.p99_us)),
                f"{ratio:.2f}x",
                f"{statistics.median(r.sign_ins_per_s or 0.0 for r in during):.1f}",
            ]
        )
    headers = ["workers", "poll req/s", "p50", "p99", "req/s during sign-ins", "p50", "p99"]
    lines = table([*headers, "ratio", "sign-ins/s"], rows)
    notes = [f"Poll JSON with a fresh session, alone and during sign-ins. {load_line(run)}"]
    return Report("make bench --compare-workers", lines, notes)


def finish(args: argparse.Namespace, report: Report, problems: list[str]) -> int:
    """Print the report, write it as markdown when asked; the exit status (1: a check failed)."""
    checks = [f"CHECK FAILED: {problem}" for problem in dict.fromkeys(problems)]
    notes = [f"Machine: {machine()}.", *report.notes]
    print()
    print("\n".join([*report.lines, "", *notes, *checks]))
    if args.markdown:
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        document = [
            f"## {report.title} ({when})",
            "",
            *report.lines,
            "",
            *(f"- {text}" for text in [*notes, *checks]),
            "",
        ]
        Path(args.markdown).write_text("\n".join(document))
        progress(f"wrote {args.markdown}")
    return 1 if problems else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    add("--worker-class", default="gthread", choices=["gthread", "sync"])
    add("--threads", type=int, default=int(os.environ.get("GUNICORN_THREADS", "8")))
    add("--duration", type=int, default=1, help="seconds per wrk run (default 1)")
    add("--rounds", type=int, default=4, help="rounds of adjacent pairs, medians (default 4)")
    add("--distributed-rounds", type=int, default=3, help="the same on Redis + PostgreSQL")
    add("--warmup", type=int, default=1, help="seconds of wrk per scenario before measuring")
    add("--connections", type=int, default=32, help="wrk -c (default 32)")
    add("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    add("--polls", type=int, default=200, help="requests per scenario for the counts")
    add("--small-store", type=int, default=100, help="stored sessions, small case")
    add("--big-store", type=int, default=100_000, help="stored sessions, big case")
    add("--sign-in-threads", type=int, default=4, help="client threads signing in")
    add("--markdown", metavar="PATH", help="also write the report as markdown to PATH")
    add("--embedded-only", action="store_true", help="skip the Redis + PostgreSQL run")
    add("--skip-instructions", action="store_true", help="skip the callgrind counts")
    add("--keep", action="store_true", help="keep the temporary folder (logs, instance)")
    add(
        "--compare-workers",
        action="store_true",
        help=f"instead: poll vs sign-ins for {', '.join(str(Workers(*w)) for w in COMPARED)}",
    )
    args = parser.parse_args(argv)
    if args.connections < args.wrk_threads:
        parser.error("--connections must be at least --wrk-threads")
    return args


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM unwind as Ctrl-C does, so that servers and folders are cleaned up
    (also when started in the background, where SIGINT comes ignored)."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)


def main(argv: list[str] | None = None) -> int:
    if Path(sys.prefix).resolve() != VENV.resolve():
        # The store is filled through the app's own objects, which live in the project's venv.
        print(f"run me with {BIN / 'python'} (make bench does)", file=sys.stderr)
        return 1
    args = parse_args(argv)
    ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="webapp-bench-"))
    try:
        with interruptible():
            other_load = busy_cpu()
            progress(f"other programs keep {other_load:.0%} of the CPU busy; working in {work}")
            (work / "logs").mkdir()
            load = Load(args.wrk_threads, args.connections, args.duration)
            run = Run(load, args.rounds, args.warmup, args.sign_in_threads, [])
            report = (compare_workers if args.compare_workers else full_run)(args, work, run)
            after = busy_cpu()
            report.notes.append(
                f"Other programs' CPU load (sampled while the bench ran nothing): "
                f"{other_load:.0%} before, {after:.0%} after."
            )
            if max(other_load, after) > BUSY:
                report.notes.append("WARNING: the machine was busy with other programs.")
            status = finish(args, report, run.problems)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("bench interrupted", file=sys.stderr)
        status = 130
    finally:
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    progress(f"done in {time.monotonic() - STARTED:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
