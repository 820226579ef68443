"""Live fixtures: a real gunicorn (2 gthread workers) on a loopback port, and Debian's chromium.

The unit tests drive the app in-process; these start what `make run` starts, so that the
things only a real server shows (several workers sharing one key and one session store, the
access log, real cookies in a real browser) are tested too.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.gunicorn import BIN, ROOT, Gunicorn, environment, read_log

USERNAME = "alice"
NAME = "Alice Example"
EMAIL = "alice@example.com"
PASSWORD = "correct horse battery staple"

WORKERS = 2
#: One access-log line per request, with the serving worker's pid (gunicorn prints `<pid>`) and
#: the User-Agent, so that a test can pick out its own requests.
ACCESS_LOG_FORMAT = 'access pid=%(p)s status=%(s)s ua="%(a)s" request="%(r)s"'
ACCESS_LINE = re.compile(
    r'^access pid=<(?P<pid>\d+)> status=(?P<status>\d+) ua="(?P<ua>[^"]*)" '
    r'request="(?P<request>[^"]*)"$'
)

#: The server settings a test may change, and the environment variable each one sets. Only
#: `poll_seconds` has a value of its own (1); the others keep the app's defaults unless given.
SETTINGS_ENV = {
    "poll_seconds": "WEBAPP_POLL_SECONDS",
    "idle_timeout": "WEBAPP_IDLE_TIMEOUT",
    "absolute_timeout": "WEBAPP_ABSOLUTE_TIMEOUT",
    "touch_interval": "WEBAPP_TOUCH_INTERVAL",
    "fresh_timeout": "WEBAPP_FRESH_TIMEOUT",
}
DEFAULT_POLL_SECONDS = 1

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class AccessLine:
    pid: int
    status: int
    user_agent: str
    request: str


@dataclass
class LiveServer:
    """A running gunicorn: where it listens, and what it has logged so far."""

    base_url: str
    gunicorn: Gunicorn
    poll_seconds: int
    #: Every setting the server was started with (`SETTINGS_ENV` names), poll_seconds included.
    settings: dict[str, int] = field(default_factory=dict)
    username: str = USERNAME
    name: str = NAME
    email: str = EMAIL
    password: str = PASSWORD

    def url(self, path: str) -> str:
        return self.base_url + path

    def output(self) -> str:
        """Everything gunicorn wrote, for failure messages."""
        return self.gunicorn.output()

    def access_lines(self) -> list[AccessLine]:
        lines = []
        for line in read_log(self.gunicorn.access_log).splitlines():
            if match := ACCESS_LINE.match(line):
                lines.append(
                    AccessLine(
                        int(match["pid"]), int(match["status"]), match["ua"], match["request"]
                    )
                )
        return lines

    def worker_pids(self) -> set[int]:
        return set(self.gunicorn.worker_pids())


def _settings(param: Any) -> dict[str, int]:
    """`live_server`'s indirect parameter: the poll interval in seconds, or a mapping (or
    pairs, which are hashable, so that pytest groups the tests sharing a server) of
    `SETTINGS_ENV` names to whole seconds."""
    pairs = isinstance(param, Mapping | tuple | list)
    given = dict(param) if pairs else {"poll_seconds": param}
    unknown = set(given) - set(SETTINGS_ENV)
    assert not unknown, f"unknown live_server settings: {sorted(unknown)}"
    return {"poll_seconds": DEFAULT_POLL_SECONDS, **{k: int(v) for k, v in given.items()}}


def _environment(instance: Path, poll_seconds: int, **settings: int) -> dict[str, str]:
    """The caller's environment without its webapp and gunicorn settings, plus the test
    settings (`settings`: other `SETTINGS_ENV` names, e.g. idle_timeout=4)."""
    env = environment(
        WEBAPP_INSTANCE_PATH=str(instance),
        WEBAPP_SECURE_COOKIES="false",  # plain HTTP on loopback: __Host- cookies need HTTPS
        WEBAPP_POLL_SECONDS=str(poll_seconds),
        # Argon2 is slow by design; the cheapest parameters keep sign-ins fast here.
        WEBAPP_ARGON2_TIME_COST="1",
        WEBAPP_ARGON2_MEMORY_COST="8",
        WEBAPP_ARGON2_PARALLELISM="1",
        # Every live client signs up from loopback: dozens of accounts per server.
        WEBAPP_SIGNUP_LIMIT="1000",
        WEB_CONCURRENCY=str(WORKERS),
        LOG_LEVEL="info",  # the "Booting worker" lines are parsed
    )
    env.update({SETTINGS_ENV[name]: str(value) for name, value in settings.items()})
    return env


def _create_user(env: dict[str, str]) -> None:
    """Through the documented CLI, as an operator would; it also creates the tables."""
    result = subprocess.run(
        [
            str(BIN / "flask"),
            "--app",
            "webapp",
            "users",
            "create",
            USERNAME,
            "--name",
            NAME,
            "--email",
            EMAIL,
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"users create failed:\n{result.stdout}\n{result.stderr}"


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], folder: Path, poll_seconds: int, **settings: int
) -> Iterator[LiveServer]:
    """Serve the app with gunicorn (`env` from `_environment`), logs in `folder`; stop after."""
    with Gunicorn(
        folder, env, workers=WORKERS, args=["--access-logformat", ACCESS_LOG_FORMAT]
    ) as server:
        yield LiveServer(
            base_url=server.base_url,
            gunicorn=server,
            poll_seconds=poll_seconds,
            settings={"poll_seconds": poll_seconds, **settings},
        )


@pytest.fixture(scope="module")
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """gunicorn serving the app from a fresh instance folder, with user alice created.

    One per test module keeps the suite fast; the tests sign in and out in their own cookie
    jars or browser contexts, so they do not disturb each other. Parametrize indirectly with
    the poll interval in seconds to change it (default 1), or with settings by name, e.g.
    `(("poll_seconds", 1), ("idle_timeout", 4), ("touch_interval", 1))` (see `SETTINGS_ENV`;
    pairs rather than a dict, so that pytest can group the tests that share a server).
    """
    settings = _settings(getattr(request, "param", DEFAULT_POLL_SECONDS))
    poll_seconds = settings.pop("poll_seconds")
    folder = tmp_path_factory.mktemp("gunicorn")
    env = _environment(folder / "instance", poll_seconds, **settings)
    _create_user(env)
    with gunicorn(env, folder, poll_seconds, **settings) as server:
        yield server


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium: Playwright's own browser downloads are not available here."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def base_url() -> str | None:
    """None: the live tests build absolute URLs from `live_server`, whose port is only known
    once it runs. Overriding also keeps pytest-playwright's fallback `base_url` (a
    session-scoped instance-method fixture) out of the way: pytest 9 deprecates that, and
    `filterwarnings = error` makes the warning fail every browser test."""
    return None
