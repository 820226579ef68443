"""Configuration sources, the instance folder and the shared generated secret key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST_ARGON2

from webapp import create_app
from webapp.config import ConfigError, from_environment
from webapp.instance import InstanceError

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env_app(tmp_path, monkeypatch):
    """create_app() as production calls it, with the instance folder in tmp_path."""
    instance = tmp_path / "instance"
    monkeypatch.setenv("WEBAPP_INSTANCE_PATH", str(instance))
    for name, value in FAST_ARGON2.items():
        monkeypatch.setenv(f"WEBAPP_{name}", str(value))

    def make():
        return create_app()

    return make


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_environment_overrides_defaults(env_app, monkeypatch):
    monkeypatch.setenv("WEBAPP_IDLE_TIMEOUT", "120")
    monkeypatch.setenv("WEBAPP_SIGNUP", "false")
    monkeypatch.setenv("WEBAPP_SECURE_COOKIES", "no")
    app = env_app()
    assert app.config["IDLE_TIMEOUT"] == 120
    assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 120
    assert app.config["SIGNUP"] is False
    assert app.config["SESSION_COOKIE_NAME"] == "session"


def test_defaults_are_secure_cookies(env_app):
    app = env_app()
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-session"
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_HTTPONLY"]
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SESSION_REFRESH_EACH_REQUEST"] is False


@pytest.fixture
def secure_cookies(env_app) -> list[str]:
    """The session and remember-me Set-Cookie headers of a sign-in over HTTPS, by default."""
    from helpers import PASSWORD, csrf_token

    from webapp.db import get_db
    from webapp.users import create_user

    app = env_app()
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()
    token = csrf_token(client)
    response = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token, "remember": "y"},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/login"},
    )
    assert response.status_code == 303
    cookies = response.headers.getlist("Set-Cookie")
    return [
        next(c for c in cookies if c.startswith("__Host-session=")),
        next(c for c in cookies if c.startswith("__Host-remember=")),
    ]


def test_v3_4_1_cookies_are_secure(secure_cookies):
    assert all("; Secure" in cookie for cookie in secure_cookies)


def test_v3_4_2_cookies_are_httponly(secure_cookies):
    assert all("; HttpOnly" in cookie for cookie in secure_cookies)


def test_v3_4_3_cookies_are_samesite_lax(secure_cookies):
    assert all("; SameSite=Lax" in cookie for cookie in secure_cookies)


def test_v3_4_4_cookies_use_the_host_prefix(secure_cookies):
    assert all(
        cookie.startswith("__Host-") and "Domain=" not in cookie for cookie in secure_cookies
    )


def test_v3_4_5_cookies_are_scoped_to_path_slash_and_this_host(secure_cookies):
    assert all("; Path=/" in cookie and "Domain=" not in cookie for cookie in secure_cookies)


def test_v3_4_anonymous_csrf_cookie_has_every_flag(env_app):
    """The cookie that carries an anonymous visitor's CSRF token: __Host-, Secure, HttpOnly,
    SameSite=Lax, Path=/, no Domain."""
    response = env_app().test_client().get("/login", base_url="https://localhost")
    (cookie,) = response.headers.getlist("Set-Cookie")
    assert cookie.startswith("__Host-csrf=")
    for flag in ("; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"):
        assert flag in cookie
    assert "Domain=" not in cookie


def test_v3_4_4_secure_sign_out_deletes_the_host_cookie_with_secure(env_app):
    """Browsers ignore a __Host- cookie deletion that lacks Secure and Path=/."""
    from helpers import PASSWORD

    from webapp.db import get_db
    from webapp.users import create_user

    app = env_app()
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()
    https = {"base_url": "https://localhost", "headers": {"Referer": "https://localhost/"}}
    token = csrf_token_https(client)
    client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}, **https
    )
    token = csrf_token_https(client)
    response = client.post("/logout", data={"csrf_token": token}, **https)
    deletion = next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("__Host-session=")
    )
    assert "Max-Age=0" in deletion and "; Secure" in deletion and "; Path=/" in deletion


def csrf_token_https(client) -> str:
    import re

    html = client.get("/", base_url="https://localhost").get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)


def test_instance_config_file_is_read(env_app, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    (instance / "config.py").write_text("POLL_SECONDS = 9\n")
    assert env_app().config["POLL_SECONDS"] == 9


def test_environment_wins_over_the_instance_file(env_app, tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    (instance / "config.py").write_text("POLL_SECONDS = 9\n")
    monkeypatch.setenv("WEBAPP_POLL_SECONDS", "3")
    assert env_app().config["POLL_SECONDS"] == 3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IDLE_TIMEOUT", "soon", "WEBAPP_IDLE_TIMEOUT must be a whole number"),
        ("IDLE_TIMEOUT", "0", "must be a positive whole number"),
        ("SIGNUP", "maybe", "WEBAPP_SIGNUP must be true or false"),
        ("SESSION_BACKEND", "mongo", "WEBAPP_SESSION_BACKEND must be one of"),
        (
            "TOUCH_INTERVAL",
            "5000",
            r"WEBAPP_TOUCH_INTERVAL=5000 must be shorter than IDLE_TIMEOUT \(default 1800\)",
        ),
    ],
)
def test_bad_settings_are_refused_at_start_with_their_name(
    env_app, monkeypatch, name, value, message
):
    monkeypatch.setenv(f"WEBAPP_{name}", value)
    with pytest.raises(ConfigError, match=message):
        env_app()


def test_from_environment_ignores_unrelated_variables():
    assert from_environment({"WEBAPP_NOPE": "1", "PATH": "/bin"}) == {}


def test_instance_folder_is_created_0700(env_app, tmp_path):
    env_app()
    assert mode(tmp_path / "instance") == 0o700


@pytest.mark.parametrize("loose", [0o755, 0o775, 0o750, 0o701], ids=oct)
def test_loose_instance_folder_is_tightened_and_logged(env_app, tmp_path, caplog, loose):
    (tmp_path / "instance").mkdir()
    os.chmod(tmp_path / "instance", loose)
    env_app()
    assert mode(tmp_path / "instance") == 0o700
    assert f"had mode {loose:04o}: tightened to 0700" in caplog.text


@pytest.mark.parametrize("open_to_all", [0o777, 0o707, 0o1777], ids=oct)
def test_instance_folder_everyone_can_write_to_is_refused(env_app, tmp_path, open_to_all):
    """Anyone may have put a secret_key or a database there: nothing is tightened silently."""
    instance = tmp_path / "instance"
    instance.mkdir()
    os.chmod(instance, open_to_all)
    with pytest.raises(InstanceError, match=f"every user can write to it.*chmod 700 {instance}"):
        env_app()
    assert mode(instance) == open_to_all  # untouched
    assert not (instance / "secret_key").exists()


def test_secret_key_is_generated_once_0600_and_reused(env_app, tmp_path):
    first = env_app()
    key_file = tmp_path / "instance" / "secret_key"
    assert mode(key_file) == 0o600
    assert first.secret_key == key_file.read_text().strip()
    assert env_app().secret_key == first.secret_key


def test_readable_secret_key_is_refused(env_app, tmp_path):
    env_app()
    os.chmod(tmp_path / "instance" / "secret_key", 0o644)
    with pytest.raises(InstanceError, match="chmod 600"):
        env_app()


def test_explicit_secret_key_wins_and_writes_no_file(env_app, tmp_path, monkeypatch):
    monkeypatch.setenv("WEBAPP_SECRET_KEY", "k" * 40)
    assert env_app().secret_key == "k" * 40
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_workers_starting_at_once_agree_on_one_key(tmp_path):
    """Eight processes race to generate the key; all must read the same one."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    code = (
        "import sys; from webapp.instance import load_or_create_secret_key as k; "
        "print(k(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(instance)], stdout=subprocess.PIPE)
        for _ in range(8)
    ]
    keys = {p.communicate()[0].strip() for p in procs}
    assert len(keys) == 1
    assert list(instance.iterdir()) == [instance / "secret_key"]


def test_folders_are_absolute_and_beside_the_package(app):
    root = Path(__file__).resolve().parent.parent
    assert app.template_folder == str(root / "templates")
    assert app.static_folder == str(root / "static")
    assert os.path.isabs(app.instance_path)


def test_proxy_hops_trusts_forwarded_client_address(app_config):
    app = create_app({**app_config, "PROXY_HOPS": 1})

    @app.get("/_ip")
    def ip():
        from flask import request

        return request.remote_addr or ""

    client = app.test_client()
    assert client.get("/_ip", headers={"X-Forwarded-For": "203.0.113.9"}).text == "203.0.113.9"
    plain = create_app({**app_config, "PROXY_HOPS": 0})
    plain.add_url_rule("/_ip", view_func=ip)
    assert plain.test_client().get("/_ip", headers={"X-Forwarded-For": "203.0.113.9"}).text != (
        "203.0.113.9"
    )


def test_a_rule_between_settings_names_what_the_user_set(env_app, monkeypatch):
    monkeypatch.setenv("WEBAPP_IDLE_TIMEOUT", "300")
    monkeypatch.setenv("WEBAPP_TOUCH_INTERVAL", "600")
    with pytest.raises(ConfigError) as refused:
        env_app()
    assert refused.value.format_message() == (
        "WEBAPP_TOUCH_INTERVAL=600 must be shorter than WEBAPP_IDLE_TIMEOUT=300"
    )


def test_a_setting_from_the_instance_file_is_named_with_the_file(env_app, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    (instance / "config.py").write_text("IDLE_TIMEOUT = 30\nPOLL_SECONDS = 'often'\n")
    with pytest.raises(ConfigError) as refused:
        env_app()
    assert refused.value.format_message() == (
        f"POLL_SECONDS in {instance / 'config.py'} must be a positive whole number of seconds, "
        "got 'often'"
    )
    (instance / "config.py").write_text("IDLE_TIMEOUT = 30\n")
    with pytest.raises(ConfigError) as refused:
        env_app()
    assert refused.value.format_message() == (
        f"TOUCH_INTERVAL (default 60) must be shorter than IDLE_TIMEOUT = 30 in "
        f"{instance / 'config.py'}"
    )


def test_an_instance_folder_open_to_all_is_refused_before_its_config_runs(env_app, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    os.chmod(instance, 0o777)  # noqa: S103 (the case under test)
    (instance / "config.py").write_text("raise SystemExit('ran')\n")
    with pytest.raises(InstanceError):
        env_app()


#: A bad setting of each kind, and the one line that says so.
BAD_SETTINGS = [
    (
        {"WEBAPP_IDLE_TIMEOUT": "2m"},
        "WEBAPP_IDLE_TIMEOUT must be a whole number of seconds (default 1800), got '2m'",
    ),
    (
        {"WEBAPP_TOUCH_INTERVAL": "4000"},
        "WEBAPP_TOUCH_INTERVAL=4000 must be shorter than IDLE_TIMEOUT (default 1800)",
    ),
    (
        {"WEBAPP_LOG_POLLS": "maybe"},
        "WEBAPP_LOG_POLLS must be true or false (or 1/0, yes/no, on/off), got 'maybe'",
    ),
]


def start(command: list[str], tmp_path: Path, settings: dict[str, str]):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBAPP_")}
    env.update(settings, WEBAPP_INSTANCE_PATH=str(tmp_path / "instance"))
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(("settings", "line"), BAD_SETTINGS)
def test_gunicorn_refuses_a_bad_setting_in_one_line_before_any_worker(tmp_path, settings, line):
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0"]
    result = start(command, tmp_path, settings)
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).splitlines()
    assert [entry for entry in lines if "[ERROR]" in entry] == [
        next(entry for entry in lines if entry.endswith(f"[ERROR] {line}"))
    ]
    assert not any("Booting worker" in entry or "Traceback" in entry for entry in lines)


@pytest.mark.parametrize(("settings", "line"), BAD_SETTINGS[:2])
def test_the_command_line_refuses_a_bad_setting_in_one_line(tmp_path, settings, line):
    result = start([str(BIN / "flask"), "--app", "webapp", "db", "upgrade"], tmp_path, settings)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"Error: {line}\n")


def test_gunicorns_master_checks_settings_without_importing_webapp(tmp_path):
    """So that the workers a HUP starts load the code on disk (and Flask's), not the master's."""
    code = (
        "import runpy, sys; conf = runpy.run_path('gunicorn.conf.py'); "
        "print(conf['control_socket']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('webapp', 'flask')))"
    )
    result = start([sys.executable, "-c", code], tmp_path, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "instance" / "gunicorn.ctl"), "[]"]
