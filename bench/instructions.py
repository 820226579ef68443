"""Instructions per request, counted by callgrind: a measure this shared 2-core VM repeats.

wrk's req/s move with whatever the other core does; the number of instructions the CPU runs
for a request does not. This module prepares a signed-in instance folder (user, sessions,
stores of 100 and 100,000 sessions) in the calling process, then runs a driver in a second
process, `python instructions.py drive PLAN OUT`, under `valgrind --tool=callgrind`. The
driver builds the app as wsgi.py does (create_app() from WEBAPP_* variables, the bench
routes on, every middleware gunicorn would call, the poll fast path included), the bare Flask
app (bare_app.py, the baseline of every ratio) and the reference app (reference_app.py:
Flask-Login + Flask-Session as documented), and calls each WSGI callable directly with
environs prepared once (werkzeug's EnvironBuilder), so neither an HTTP client nor gunicorn
is counted. Each scenario is warmed up outside collection, then
run N and 2N times inside `sys.call_tracing(...)`, which callgrind is told to collect within
and dump after (--toggle-collect, --dump-after): one dump per run, start-up never counted.
(I(2N) - I(N)) / N is a request's cost with every fixed cost gone; the same for a WSGI app
that does nothing (the driver's own loop) is subtracted.

Not counted: the kernel (syscalls: reading the session file, the database's file access),
gunicorn's own work per request (HTTP parsing, environ, response writing, access log: the
same for every route, so leaving it out makes a ratio to the bare Flask app stricter, not
kinder), and other threads' waiting. The same driver also runs without valgrind: CPU time
per request (thread_time, kernel time included) in interleaved rounds, and the unit test
runs it on a few requests to pin that each scenario answers as intended.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import html
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
USERNAME = "bench"
PASSWORD = "bench correct horse battery staple"
COOKIE = "session"
CSRF_INPUT = re.compile(r'<input[^>]*\bname="csrf_token"[^>]*\bvalue="([^"]+)"')
DATA_STATE = re.compile(r'data-state="([^"]+)"')
#: Long enough that a session signed in before the driver starts keeps its cached user for
#: the whole run under valgrind (~50x slower): the same code path as a fresh session under
#: wrk. A setting only; the idle tab's session is made older than it.
TOUCH_INTERVAL = 900
#: The CPython function the measured runs are called through; callgrind collects inside it.
REGION = "sys_call_tracing"
#: Requests per measured run (N; the second run is 2N), warm-up requests per scenario.
REQUESTS = 50
WARMUP = 20
#: Rounds of the in-process CPU-time measurement (no valgrind).
TIME_ROUNDS = 9
SUMMARY = re.compile(rb"^summary: (\d+)", re.MULTILINE)
#: A client request that turns callgrind's instrumentation on (valgrind's own header), so that
#: start-up and warm-up run uninstrumented, several times faster.
START_INSTRUMENTATION_C = """
#include <valgrind/callgrind.h>
void start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
"""
START_LIBRARY = "WEBAPP_BENCH_START_INSTRUMENTATION"
#: Targets of issue 5 that this measures.
TARGET_RATIO = 0.9
TARGET_FLAT = 1.2


@dataclass(frozen=True)
class Case:
    """One request the driver repeats: which app, what it asks, what must come back."""

    label: str
    app: str  # "main", "big" (webapp), "bare", "reference", or "null" (the driver's own cost)
    path: str
    session: str  # "none", "fresh", "idle"
    expect: int
    kind: str  # "json", "html", "empty"
    signed_in: bool
    htmx: bool = False
    state: bool = False
    target: str = ""  # "ratio" (target 1), "small"/"big" (target 4), "" (shown only)
    sets_cookie: bool = False  # every answer must (the reference app's refresh), or none may


NULL = Case("null WSGI app (the driver's own loop)", "null", "/", "none", 200, "empty", False)
BARE_FLASK = Case("bare Flask app", "bare", "/", "none", 200, "json", False)
BARE = Case(
    "bare route in webapp (/__bench/bare)", "main", "/__bench/bare", "none", 200, "json", False
)
REFERENCE = Case(
    "Flask-Login + Flask-Session poll",
    "reference",
    "/session",
    "fresh",
    200,
    "json",
    True,
    sets_cookie=True,
)
CASES = [
    NULL,
    BARE_FLASK,
    BARE,
    Case("poll JSON", "main", "/session", "fresh", 200, "json", True, target="ratio"),
    Case("poll fragment", "main", "/session", "fresh", 200, "html", True, True, target="ratio"),
    Case(
        "poll unchanged (204)", "main", "/session", "fresh", 204, "empty", True, True, True, "ratio"
    ),
    Case("poll JSON, idle tab", "main", "/session", "idle", 200, "json", True),
    Case(
        "poll unchanged (204), idle tab", "main", "/session", "idle", 204, "empty", True, True, True
    ),
    REFERENCE,
]
SMALL = "poll JSON, {n:,} sessions stored"


def store_cases(small: int, big: int) -> list[Case]:
    """The JSON poll on the main store (topped up to `small`) and on a second one of `big`."""
    return [
        Case(SMALL.format(n=small), "main", "/session", "fresh", 200, "json", True, target="small"),
        Case(SMALL.format(n=big), "big", "/session", "fresh", 200, "json", True, target="big"),
    ]


# preparing (in the calling process, natively) -----------------------------------------------


def app_env(instance: Path, backend: dict[str, str] | None = None) -> dict[str, str]:
    """The WEBAPP_* settings gunicorn gets in run.py, plus the longer touch interval."""
    env = {
        "WEBAPP_INSTANCE_PATH": str(instance),
        "WEBAPP_SECURE_COOKIES": "false",
        "WEBAPP_TOUCH_INTERVAL": str(TOUCH_INTERVAL),
        **(backend or {}),
    }
    for name in ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST", "ARGON2_PARALLELISM"):
        if value := os.environ.get(f"WEBAPP_{name}"):  # the unit test makes sign-ins cheap
            env[f"WEBAPP_{name}"] = value
    return env


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with every WEBAPP_* variable replaced by `env`, restored afterwards."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("WEBAPP_")]:
        del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_app(env: dict[str, str]) -> Any:
    """The app as the bench's gunicorn builds it (create_app() reading WEBAPP_* variables)."""
    from counted_app import create_counted_app

    with environment(env):
        return create_counted_app()


def sign_in(app: Any) -> str:
    """GET /login, POST the form with its CSRF token (Argon2 at its configured cost): the sid."""
    from webapp.db import get_db
    from webapp.users import create_user

    with app.app_context():
        create_user(get_db(), USERNAME, PASSWORD)
    client = app.test_client()
    token = CSRF_INPUT.search(client.get("/login").get_data(as_text=True))
    assert token, "no csrf_token input on /login"
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": html.unescape(token[1])}
    answer = client.post("/login", data=form)
    cookie = client.get_cookie(COOKIE)
    if answer.status_code != 303 or cookie is None:
        raise RuntimeError(f"POST /login answered {answer.status_code}, no session")
    return cookie.value


def widget_state(app: Any, sid: str) -> str:
    """The state token the widget sends back as X-Session-State (unchanged: 204)."""
    client = app.test_client()
    client.set_cookie(COOKIE, sid)
    match = DATA_STATE.search(client.get("/session", headers={"HX-Request": "true"}).text)
    assert match, "no data-state in the widget"
    return match[1]


def headers_for(case: Case, sessions: dict[str, tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    if case.session != "none":
        sid, state = sessions[case.session]
        headers["Cookie"] = f"{COOKIE}={sid}"
        if case.state:
            headers["X-Session-State"] = state
    if case.htmx:
        headers["HX-Request"] = "true"
    return headers


def prepare(work: Path, cases: list[Case], *, small: int = 0, big: int = 0) -> dict[str, Any]:
    """Instance folders, signed-in sessions and filled stores for `cases`: the driver's plan."""
    logger = logging.getLogger("webapp")  # the app's sign-in and schema lines: not here
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return _prepare(work, cases, small=small, big=big)
    finally:
        logger.setLevel(level)


def _prepare(work: Path, cases: list[Case], *, small: int, big: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import copy_sessions, fill_store

    apps, sessions_by_app = {}, {}
    reference = None
    if any(case.app == "reference" for case in cases):
        reference = work / "instructions-reference"
        sessions_by_app["reference"] = {"fresh": (sign_in_reference(reference), "")}
    for name in sorted({case.app for case in cases} - {"null", "bare", "reference"}):
        env = app_env(work / f"instructions-{name}")
        app = load_app(env)
        fresh = sign_in(app)
        idle = copy_sessions(Path(app.instance_path), fresh, 1, older_by=TOUCH_INTERVAL + 1)
        sessions_by_app[name] = {
            "fresh": (fresh, widget_state(app, fresh)),
            "idle": (idle, widget_state(app, idle)),
        }
        if target := {"main": small, "big": big}.get(name):
            fill_store(Path(app.instance_path), fresh, target)
        apps[name] = env
        with contextlib.suppress(Exception):
            app.extensions["webapp.db"].kw["bind"].dispose()
    plan_cases = [
        {**vars(case), "headers": headers_for(case, sessions_by_app.get(case.app, {}))}
        for case in cases
    ]
    return {"apps": apps, "reference": reference and str(reference), "cases": plan_cases}


def sign_in_reference(folder: Path) -> str:
    """The reference app's user, made in `folder`, signed in: its session id."""
    import reference_app

    reference_app.prepare(folder, USERNAME, PASSWORD)
    client = reference_app.create_app(str(folder)).test_client()
    answer = client.post("/login", data={"username": USERNAME, "password": PASSWORD})
    cookie = client.get_cookie(COOKIE)
    if answer.status_code != 303 or cookie is None:
        raise RuntimeError(f"reference POST /login answered {answer.status_code}, no session")
    return cookie.value


# the driver (under valgrind, or natively) ---------------------------------------------------


def null_app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The driver's own cost: a WSGI app that answers nothing at once."""
    start_response("200 OK", [])
    return [b""]


def environ_for(path: str, headers: dict[str, str]) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(
        path=path, base_url="http://127.0.0.1:8000", headers=list(headers.items())
    )
    environ: dict[str, Any] = builder.get_environ()
    environ["REMOTE_ADDR"] = "127.0.0.1"
    return environ


def serve(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """One request as a WSGI server makes it: a fresh environ, the body read, then close()."""
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], _exc: Any = None) -> None:
        answer[:] = [status, headers]

    body = app(dict(environ), start_response)
    try:
        data = b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()
    return int(answer[0][:3]), dict(answer[1]), data


def repeat(app: Any, environ: dict[str, Any], count: int, expect: int) -> int:
    """`count` requests; how many answered another status than `expect`."""
    wrong = 0
    for _ in range(count):
        status, _headers, _body = serve(app, environ)
        wrong += status != expect
    return wrong


def check(case: dict[str, Any], status: int, headers: dict[str, str], body: bytes) -> list[str]:
    """What is wrong with one answer for this case (empty: it hit the intended scenario)."""
    problems = []
    if status != case["expect"]:
        problems.append(f"status {status}, expected {case['expect']}")
    if ("Set-Cookie" in headers) != case["sets_cookie"]:
        problems.append("it set a cookie" if "Set-Cookie" in headers else "it set no cookie")
    kind = case["kind"]
    content_type = headers.get("Content-Type", "")
    if kind == "empty" and body:
        problems.append(f"a body of {len(body)} bytes, expected none")
    if kind == "json":
        if not content_type.startswith("application/json"):
            problems.append(f"Content-Type {content_type!r}, expected JSON")
        else:
            data = json.loads(body)
            if case["path"] == "/session" and bool(data.get("user")) != case["signed_in"]:
                problems.append(
                    f"signed in: {bool(data.get('user'))}, expected {case['signed_in']}"
                )
    if kind == "html":
        text = body.decode()
        if not content_type.startswith("text/html") or 'id="session-widget"' not in text:
            problems.append(f"Content-Type {content_type!r}, expected the widget fragment")
        elif ('data-session-status="authenticated"' in text) != case["signed_in"]:
            problems.append("the widget does not show the expected sign-in state")
    return problems


def nothing() -> None:
    """Instrumentation is on from the start (no valgrind, or no C compiler)."""


def drive(
    plan: dict[str, Any],
    *,
    requests: int,
    warmup: int,
    mode: str,
    instrument: Callable[[], None] = nothing,
) -> dict[str, Any]:
    """Check each case's answer, warm it up, then: "count" turns instrumentation on and runs
    N and 2N requests through sys.call_tracing (callgrind's regions), "time" measures CPU
    time per request in interleaved rounds, "check" stops after the checks."""
    import bare_app
    import reference_app

    apps = {name: load_app(env) for name, env in plan["apps"].items()}
    apps["null"], apps["bare"] = null_app, bare_app.app
    if plan["reference"]:
        apps["reference"] = reference_app.create_app(plan["reference"])
    runs = []
    for case in plan["cases"]:
        app, environ = apps[case["app"]], environ_for(case["path"], case["headers"])
        status, headers, body = serve(app, environ)
        case_result = {"label": case["label"], "status": status, "problems": []}
        case_result["problems"] = check(case, status, headers, body)
        case_result["wrong"] = repeat(app, environ, warmup, case["expect"])
        runs.append((case, app, environ, case_result))
    if mode == "count":
        instrument()
        for case, app, environ, result in runs:
            for count in (requests, 2 * requests):
                gc.collect()  # both runs start from the same collector state
                result["wrong"] += sys.call_tracing(repeat, (app, environ, count, case["expect"]))
    elif mode == "time":
        for _ in range(TIME_ROUNDS):
            for case, app, environ, result in runs:
                gc.collect()
                began = time.thread_time_ns()
                result["wrong"] += repeat(app, environ, requests, case["expect"])
                result.setdefault("cpu_ns", []).append((time.thread_time_ns() - began) / requests)
    return {"requests": requests, "cases": [result for *_, result in runs]}


# running it and reading callgrind's dumps ----------------------------------------------------


def valgrind() -> str:
    path = shutil.which("valgrind")
    if path is None:
        raise RuntimeError("valgrind is missing: apt-get install valgrind (make system-deps)")
    return path


def run_driver(work: Path, plan: dict[str, Any], mode: str, requests: int) -> dict[str, Any]:
    """The driver in its own process: under callgrind for "count", natively for "time"."""
    plan_file, out = work / "instructions-plan.json", work / f"instructions-{mode}.json"
    plan_file.write_text(json.dumps(plan))
    dumps = work / f"callgrind-{mode}"
    shutil.rmtree(dumps, ignore_errors=True)
    dumps.mkdir(parents=True)
    driver = [str(BIN / "python"), __file__, "drive", str(plan_file), str(out), mode]
    driver.append(str(requests))
    command = driver
    # a fixed hash seed: the same dict layouts, so the same count run after run
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if mode == "count":
        library = start_library(work)
        if library:
            env[START_LIBRARY] = str(library)
        command = [
            valgrind(),
            "--tool=callgrind",
            f"--instr-atstart={'no' if library else 'yes'}",
            "--collect-atstart=no",
            f"--toggle-collect={REGION}",
            f"--dump-after={REGION}",
            f"--callgrind-out-file={dumps}/callgrind.out.%p",
            *driver,
        ]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"the {mode} driver failed:\n{result.stdout}{result.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    if mode == "count":
        counts = region_counts(dumps)
        expected = 2 * len(report["cases"])
        if len(counts) != expected:
            raise RuntimeError(
                f"callgrind wrote {len(counts)} regions, expected {expected}: is {REGION} "
                f"a symbol of this Python? {dumps}"
            )
        for number, case in enumerate(report["cases"]):
            once, twice = counts[2 * number], counts[2 * number + 1]
            case["instructions"] = (twice - once) / requests
    return report


def start_library(work: Path) -> Path | None:
    """START_INSTRUMENTATION_C built with the C compiler; None without one (then everything
    runs instrumented: the same counts, several times slower)."""
    source, library = work / "start_instrumentation.c", work / "start_instrumentation.so"
    source.write_text(START_INSTRUMENTATION_C)
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return None
    built = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
        capture_output=True,
        check=False,
    )
    return library if built.returncode == 0 else None


def region_counts(folder: Path) -> list[int]:
    """Instructions in each dump callgrind wrote at the end of a region, in order."""
    numbered = []
    for path in folder.glob("callgrind.out.*.*"):
        suffix = path.name.rsplit(".", 1)[1]
        if suffix.isdigit() and (match := SUMMARY.search(path.read_bytes())):
            numbered.append((int(suffix), int(match[1])))
    return [count for _, count in sorted(numbered)]


@dataclass
class Measured:
    label: str
    target: str
    instructions: float  # per request, the driver's own loop subtracted
    cpu_ns: list[float]  # CPU time per request in-process, per round, the loop subtracted


def measure(work: Path, *, small: int, big: int, requests: int = REQUESTS) -> list[Measured]:
    """Both measures for CASES and the store-size pair; RuntimeError when a case did not
    answer as intended (status, signed in, JSON or fragment) in either driver."""
    cases = CASES + store_cases(small, big)
    plan = prepare(work, cases, small=small, big=big)
    counted = run_driver(work, plan, "count", requests)
    timed = run_driver(work, plan, "time", requests)
    problems = [
        f"{result['label']}: {problem}"
        for report in (counted, timed)
        for result in report["cases"]
        for problem in [
            *result["problems"],
            *([f"{result['wrong']} answers had another status"] if result["wrong"] else []),
        ]
    ]
    if problems:
        raise RuntimeError(
            "the instruction-count driver missed its scenarios: " + "; ".join(problems)
        )
    null_count, null_cpu = counted["cases"][0]["instructions"], timed["cases"][0]["cpu_ns"]
    return [
        Measured(
            case.label,
            case.target,
            count["instructions"] - null_count,
            [c - n for c, n in zip(cpu["cpu_ns"], null_cpu, strict=True)],
        )
        for case, count, cpu in zip(cases, counted["cases"], timed["cases"], strict=True)
        if case is not NULL
    ]


def per_round(over: Measured, under: Measured) -> float:
    """The median over rounds of over's CPU time over under's (measured in the same round)."""
    return statistics.median(o / u for o, u in zip(over.cpu_ns, under.cpu_ns, strict=True))


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(
    measured: list[Measured], table: Callable[[list[str], list[list[str]]], list[str]]
) -> list[str]:
    """The table (markdown, aligned), one line per target with its verdict by each measure,
    and one for the other baselines."""
    bare = next(m for m in measured if m.label == BARE_FLASK.label)
    rows = []
    for m in measured:
        rows.append(
            [
                m.label,
                f"{m.instructions:,.0f}",
                f"{bare.instructions / m.instructions:.2f}x",
                f"{statistics.median(m.cpu_ns) / 1000:.0f} us",
                f"{per_round(bare, m):.2f}x",
            ]
        )
    headers = ["in-process, per request", "instructions", "bare Flask / this", "CPU time"]
    headers.append("bare Flask / this")
    polls = [m for m in measured if m.target == "ratio"]
    by_count = min(bare.instructions / m.instructions for m in polls)
    by_cpu = min(per_round(bare, m) for m in polls)
    small = next(m for m in measured if m.target == "small")
    big = next(m for m in measured if m.target == "big")
    flat_count, flat_cpu = big.instructions / small.instructions, per_round(big, small)
    return [
        *table(headers, rows),
        "",
        f"Target 1 in-process (signed-in poll JSON, fragment and 204 >= {TARGET_RATIO}x the "
        f"bare Flask app): lowest {by_count:.2f}x by instructions "
        f"({verdict(by_count >= TARGET_RATIO)}), {by_cpu:.2f}x by CPU time "
        f"({verdict(by_cpu >= TARGET_RATIO)}).",
        f"Target 4 in-process ({big.label} within {TARGET_FLAT}x of {small.label}): "
        f"{flat_count:.3f}x by instructions ({verdict(flat_count <= TARGET_FLAT)}), "
        f"{flat_cpu:.2f}x by CPU time ({verdict(flat_cpu <= TARGET_FLAT)}).",
        baselines(measured, bare),
    ]


def baselines(measured: list[Measured], bare: Measured) -> str:
    """webapp's own bare route and the reference poll against the bare Flask app, and
    webapp's JSON poll against the reference poll."""
    by_label = {m.label: m for m in measured}
    in_app, documented = by_label[BARE.label], by_label[REFERENCE.label]
    json_poll = next(m for m in measured if m.label == "poll JSON")

    def shown(m: Measured) -> str:
        by_count = bare.instructions / m.instructions
        return f"{by_count:.2f}x by instructions, {per_round(bare, m):.2f}x by CPU time"

    return (
        f"Baselines in-process: the bare route inside webapp {shown(in_app)}; the "
        f"Flask-Login + Flask-Session poll {shown(documented)}; webapp's JSON poll costs "
        f"{json_poll.instructions / documented.instructions:.2f}x its instructions and "
        f"{1 / per_round(documented, json_poll):.2f}x its CPU time."
    )


def method_note(requests: int = REQUESTS) -> str:
    return (
        f"In-process: the app as wsgi.py builds it (bench routes on, poll fast path, "
        f"every middleware gunicorn calls), the bare Flask app and the reference app, each "
        f"called as a WSGI callable with prepared environs; "
        f"gunicorn, the HTTP client and the kernel are not counted. Instructions: callgrind, "
        f"(I(2N) - I(N)) / N with N = {requests}, minus the driver's own loop; repeatable "
        f"within 0.5 % back to back, within a few per cent between runs. CPU time: thread "
        f"CPU time per request (kernel included), median "
        f"of {TIME_ROUNDS} interleaved rounds of {requests}; its ratios are per round."
    )


def main(argv: list[str]) -> int:
    """`drive PLAN OUT MODE N`: the driver's entry point (run_driver starts it)."""
    if len(argv) != 5 or argv[0] != "drive":
        print(f"usage: {Path(__file__).name} drive PLAN OUT count|time|check N", file=sys.stderr)
        return 2
    plan = json.loads(Path(argv[1]).read_text())
    library = os.environ.get(START_LIBRARY)
    instrument = ctypes.CDLL(library).start_instrumentation if library else nothing
    report = drive(plan, requests=int(argv[4]), warmup=WARMUP, mode=argv[3], instrument=instrument)
    Path(argv[2]).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
