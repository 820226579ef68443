"""What `make run` starts: gunicorn with the Makefile's variables. The banner comes once a
worker listens and tells how cookies are sent; every worker logs its address; the control
socket is in the instance folder; polls stay out of the access log when WEBAPP_LOG_POLLS is
false; webapp's own log lines are JSON objects."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import time

import pytest
from conftest import ROOT, WORKERS, _environment
from support.gunicorn import BIN, stop
from support.gunicorn import read_log as _read
from support.ports import free_port

pytestmark = pytest.mark.live

START_TIMEOUT = 20.0
#: What the Makefile's run target sets, besides BIND and what the case under test sets.
MAKE_RUN = {"RUN_BANNER": "1"}


def get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(
    scope="module",
    params=[
        {"WEBAPP_SECURE_COOKIES": "false", "WEBAPP_LOG_POLLS": "false"},  # make run's defaults
        {"WEBAPP_SECURE_COOKIES": "true"},  # and gunicorn's: polls logged
    ],
    ids=["make-run-defaults", "secure-cookies-and-polls-logged"],
)
def started(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """gunicorn as `make run` starts it: (settings, port, instance folder, stdout, stderr, and
    whether the port accepted connections the moment the banner appeared)."""
    tmp_path = tmp_path_factory.mktemp("make-run")
    instance = tmp_path / "instance"
    env = _environment(instance, 1)
    env.update(MAKE_RUN, **request.param)
    port = free_port()
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while "webapp: serving" not in _read(err):
                assert process.poll() is None and time.monotonic() < deadline, _read(err)
                time.sleep(0.01)
            listening_at_banner = accepts(port)
            while _read(err).count("Listening at: http") < WORKERS or "Control socket" not in (
                _read(err)
            ):
                assert process.poll() is None and time.monotonic() < deadline, _read(err)
                time.sleep(0.05)
            assert get(port, "/login") == 200
            assert get(port, "/session") == 200
        finally:
            stop(process)
    return request.param, port, instance, _read(out), _read(err), listening_at_banner


def test_the_banner_comes_once_a_worker_listens(started):
    _, port, _, _, err, listening_at_banner = started
    assert listening_at_banner
    assert err.count("webapp: serving") == 1  # one banner, not one per worker
    assert err.index(f"Listening at: http://127.0.0.1:{port} (worker ") < err.index(
        f"webapp: serving http://127.0.0.1:{port}/"
    )


def test_the_banner_tells_the_truth_about_secure_cookies(started):
    settings, *_, err, _ = started
    if settings["WEBAPP_SECURE_COOKIES"] == "true":
        assert "Secure cookies are ON (WEBAPP_SECURE_COOKIES=true)" in err
        assert "OFF" not in err
    else:
        assert "Secure cookies are OFF (WEBAPP_SECURE_COOKIES=false)" in err
    assert "--app webapp users create YOURNAME" in err


def test_every_worker_logs_the_address_it_listens_at(started):
    _, port, _, _, err, _ = started
    workers = re.findall(rf"Listening at: http://127\.0\.0\.1:{port} \(worker (\d+)\)", err)
    assert len(set(workers)) == WORKERS


def test_the_control_socket_is_in_the_instance_folder(started):
    _, _, instance, _, err, _ = started
    assert f"Control socket listening at {instance / 'gunicorn.ctl'}" in err


def test_polls_stay_out_of_the_access_log_when_log_polls_is_false(started):
    settings, _, _, out, _, _ = started
    assert '"GET /login HTTP/1.1" 200' in out
    assert ('"GET /session HTTP/1.1" 200' in out) is (settings.get("WEBAPP_LOG_POLLS") != "false")


def test_webapps_log_lines_are_json_objects(started):
    *_, err, _ = started
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line["logger"] == "webapp.schema" for line in lines)  # the first request's
    assert all({"time", "level", "logger"} <= set(line) for line in lines)
    assert not [line for line in err.splitlines() if " in schema: " in line]  # Flask's text form


def test_make_run_sets_what_these_tests_set():
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "RUN_BANNER=1" in recipe
    assert "WEBAPP_SECURE_COOKIES=$${WEBAPP_SECURE_COOKIES:-false}" in recipe
    assert "WEBAPP_LOG_POLLS=$${WEBAPP_LOG_POLLS:-false}" in recipe


@pytest.mark.parametrize(
    ("bind", "base_url"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("localhost:9000", "http://localhost:9000"),
    ],
)
def test_make_run_mails_links_to_where_it_listens(bind: str, base_url: str) -> None:
    """Mailed links (WEBAPP_BASE_URL) follow BIND's port unless the environment sets them."""
    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", f"BIND={bind}", "SERVE_STAMP="],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"WEBAPP_BASE_URL=${{WEBAPP_BASE_URL:-{base_url}}}" in shown
