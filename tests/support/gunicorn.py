"""gunicorn as `make run` starts it (gunicorn.conf.py), for the live tests, `make bench` and
`make stress`: one launcher, so that all of them measure and test the same server.

gunicorn.conf.py gives each worker a listening socket of its own (reuse_port), where port 0
would give each worker a port of its own: a free port is chosen here, and should another
process take it first, gunicorn says so ("Cannot listen at ...") and the next one is tried.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
#: The virtualenv running this also holds gunicorn (`.venv/bin` under `make`).
BIN = Path(sys.executable).parent
CONFIG = "gunicorn.conf.py"
BOOTED = re.compile(r"Booting worker with pid: (\d+)")
#: Tries at a free port (another process may take the one chosen first).
PORT_ATTEMPTS = 3
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
#: gunicorn.conf.py's own variables: a launched server takes its address and worker counts
#: from the launcher's arguments, never from the caller's environment.
SERVER_VARIABLES = ("BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS")


class GunicornError(RuntimeError):
    """gunicorn exited, or did not serve in time; the message ends with its log."""


def environment(**settings: str) -> dict[str, str]:
    """The caller's environment without its webapp (WEBAPP_*) and gunicorn settings, plus
    `settings`: a server that behaves the same whatever the shell running the tests holds."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("WEBAPP_") and name not in SERVER_VARIABLES
    }
    return {**env, **settings}


def command(bind: str, *args: str, bin_dir: Path = BIN) -> list[str]:
    """gunicorn with gunicorn.conf.py at `bind`, without the control socket (27.x puts one at
    a fixed path per user, which servers started side by side would share), then `args`."""
    gunicorn = str(bin_dir / "gunicorn")
    return [gunicorn, "-c", CONFIG, "--no-control-socket", "--bind", bind, *args]


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM lets the workers finish their requests; SIGKILL (the whole process group, when
    gunicorn leads one) if they do not within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


class Gunicorn:
    """One gunicorn on a free loopback port, its access log (stdout) and error log (stderr) in
    `logs`; started by `start()` or `with`, ready once every worker has booted and
    `ready_path` answers 200, stopped by `stop()` or at the end of the `with` block."""

    def __init__(
        self,
        logs: Path,
        env: Mapping[str, str],
        *,
        workers: int,
        name: str = "gunicorn",
        app: str | None = None,
        args: Sequence[str] = (),
        ready_path: str = "/healthz",
        bin_dir: Path = BIN,
    ) -> None:
        """`app`: gunicorn's WSGI app argument (default: gunicorn.conf.py's, wsgi:app);
        `args`: more gunicorn options (worker class, threads, --pythonpath...)."""
        self.env, self.workers, self.app, self.args = dict(env), workers, app, list(args)
        self.ready_path, self.bin_dir = ready_path, bin_dir
        self.access_log = logs / f"{name}.access.log"
        self.error_log = logs / f"{name}.error.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Gunicorn:
        self.access_log.parent.mkdir(parents=True, exist_ok=True)
        self.access_log.write_bytes(b"")
        self.error_log.write_bytes(b"")
        try:
            for _attempt in range(PORT_ATTEMPTS):
                self.port = free_port()
                self.process = self._spawn()
                if self._wait_until_serving():
                    return self
        except BaseException:
            self.stop()
            raise
        tries = f"gunicorn found no free port in {PORT_ATTEMPTS} tries"
        raise GunicornError(f"{tries}\n{self.output()}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        args = [f"--workers={self.workers}", "--log-level=info", *self.args]  # info: "Booting"
        args += [self.app] if self.app else []
        with self.access_log.open("ab") as stdout, self.error_log.open("ab") as stderr:
            return subprocess.Popen(
                command(f"127.0.0.1:{self.port}", *args, bin_dir=self.bin_dir),
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C reaches the caller only, which stops gunicorn
            )

    def _wait_until_serving(self) -> bool:
        """True once every worker has booted and `ready_path` answers 200; False when
        gunicorn could not have the port (taken meanwhile)."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if f"Cannot listen at 127.0.0.1:{self.port}" in self.errors():
                    return False
                exited = f"gunicorn exited with {self.process.returncode}"
                raise GunicornError(f"{exited}\n{self.output()}")
            if len(self.worker_pids()) >= self.workers and self._ready():
                return True
            time.sleep(0.05)
        raise GunicornError(
            f"gunicorn did not answer {self.ready_path} within {START_TIMEOUT} s\n{self.output()}"
        )

    def _ready(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", self.ready_path)
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def errors(self) -> str:
        """The error log so far (gunicorn's own lines and the app's)."""
        return read_log(self.error_log)

    def output(self) -> str:
        """Everything gunicorn wrote, for failure messages."""
        return (
            f"--- access log (stdout) ---\n{read_log(self.access_log)}\n"
            f"--- error log (stderr) ---\n{self.errors()}"
        )

    def worker_pids(self) -> list[int]:
        """Every worker booted so far, replacements included, in order."""
        return [int(pid) for pid in BOOTED.findall(self.errors())]


def read_log(path: Path) -> str:
    """A log file's text so far (empty before gunicorn has written it)."""
    return path.read_text(errors="replace") if path.exists() else ""
