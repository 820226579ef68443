"""gunicorn.conf.py's listening sockets: one per worker on TCP (reuse_port, so the kernel spreads
connections over the workers), a clear refusal when another program has the address, and one
shared socket where sharing by SO_REUSEPORT would break (a Unix socket)."""

from __future__ import annotations

import http.client
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from conftest import WORKERS, _environment
from support.gunicorn import BOOTED, ROOT, command, read_log, stop

if TYPE_CHECKING:
    from conftest import LiveServer

START_TIMEOUT = 20.0


def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets in LISTEN state on 127.0.0.1:`port` (/proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: TCP_LISTEN
            inodes.add(fields[9])
    return inodes


def unix_listeners(path: Path) -> int:
    """Unix sockets bound to `path` that listen (/proc/net/unix: flags 00010000 = listening)."""
    return sum(
        1
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]
        if line.split()[-1] == str(path) and line.split()[3] == "00010000"
    )


def start(env: dict[str, str], bind: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command(bind),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_each_worker_listens_on_a_socket_of_its_own(live_server: LiveServer) -> None:
    """With one shared socket there would be one listening socket for the port."""
    port = int(live_server.base_url.rsplit(":", 1)[1])
    assert len(live_server.worker_pids()) == WORKERS
    assert len(listening_inodes(port)) == WORKERS


def test_an_address_in_use_is_refused_at_once_with_its_reason(tmp_path: Path) -> None:
    """Also when the other program set SO_REUSEPORT too, which would let the workers bind
    and share its port silently; never the endless respawning of workers that cannot bind."""
    env = _environment(tmp_path / "instance", 1)
    for reuse_port in (False, True):
        with socket.socket() as other:
            if reuse_port:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            log = tmp_path / f"gunicorn-{reuse_port}.log"
            process = start(env, f"127.0.0.1:{port}", log)
            try:
                returncode = process.wait(timeout=START_TIMEOUT)
            finally:
                stop(process)
            output = read_log(log)
            assert returncode == 1, output
            assert f"Cannot listen at 127.0.0.1:{port}: Address already in use" in output
            assert not BOOTED.search(output), output
            assert "Traceback" not in output


def test_a_unix_socket_is_one_socket_shared_by_the_workers(tmp_path: Path) -> None:
    """reuse_port on a Unix socket would have each worker replace the file: only the last
    would get connections."""
    env = _environment(tmp_path / "instance", 1)
    folder = Path(tempfile.mkdtemp(prefix="webapp-unix-"))  # short: a socket path has a limit
    path = folder / "gunicorn.sock"
    log = tmp_path / "gunicorn.log"
    process = start(env, f"unix:{path}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while len(BOOTED.findall(read_log(log))) < WORKERS or not answers_health(path):
            assert process.poll() is None, read_log(log)
            assert time.monotonic() < deadline, read_log(log)
            time.sleep(0.05)
        assert unix_listeners(path) == 1, read_log(log)
    finally:
        stop(process)
        path.unlink(missing_ok=True)
        folder.rmdir()


def answers_health(path: Path) -> bool:
    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(2)
            self.sock.connect(str(path))

    connection = UnixConnection("localhost", timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()
