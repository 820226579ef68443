"""The operator's files in docs/: nginx accepts the example config, systemd the example unit,
the example environment file names only real settings (and all of them), and docs/deploy.md
covers what an operator must get right.

Needs Debian's nginx (`nginx -t`), openssl (a throwaway certificate) and systemd
(`systemd-analyze verify`); `make test` installs them. Nothing listens and nothing is started.
"""

from __future__ import annotations

import os
import pwd
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from webapp import config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
NGINX_CONF = EXAMPLES / "nginx.conf"
UNIT = EXAMPLES / "webapp.service"
ENV_FILE = EXAMPLES / "webapp.env"
DEPLOY_MD = DOCS / "deploy.md"

#: The only WEBAPP_* names allowed besides webapp.config.SETTINGS: INSTANCE_PATH is read from
#: the environment alone (webapp.config.instance_path()), before any setting; REDIS_URL is the
#: Redis session store's address (WEBAPP_SESSION_BACKEND=redis), listed here so the docs may
#: name it whether or not SETTINGS has it yet. A name in neither fails the tests below.
EXTRA_SETTINGS = {"INSTANCE_PATH", "REDIS_URL"}
KNOWN = {
    config.ENV_PREFIX + name
    for name in (*config.SETTINGS, *config.SERVER_SETTINGS, *EXTRA_SETTINGS)
}

#: Paths in the example nginx config that stand for the operator's own (each marked
#: "# PLACEHOLDER" in the file), swapped for temporary ones before `nginx -t`.
CERT = "/etc/ssl/webapp/fullchain.pem"
KEY = "/etc/ssl/webapp/privkey.pem"
STATIC = "/srv/webapp/static/"
ACCESS_LOG = "/var/log/nginx/webapp.access.log"


def debian_command(name: str) -> str:
    """The path of a command from a Debian package (sbin included for non-root PATHs)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert path, f"{name} is missing: make test installs it (apt-get install nginx openssl systemd)"
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def active(text: str) -> str:
    """The text without comments (none of these files has a # inside a value that matters)."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def block(text: str, header: str) -> str:
    """The body of the first `header { ... }` block in nginx config text."""
    start = text.index(header)
    depth = 0
    for index in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[text.index("{", start) + 1 : index]
    raise AssertionError(f"unbalanced braces after {header!r}")


# --- nginx ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    result = run(
        debian_command("openssl"),
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    return cert, key


def nginx_test(tmp_path: Path, certificate: tuple[Path, Path], example: str) -> str:
    """Run `nginx -t` on `example` (the example's text, placeholders swapped for temporary
    files) included in a minimal main config under tmp_path; return nginx's output."""
    cert, key = certificate
    for placeholder in (CERT, KEY, STATIC, ACCESS_LOG):
        lines = [line for line in example.splitlines() if placeholder in line.split("#")[0]]
        assert len(lines) == 1, f"{placeholder} should be used once"
        assert lines[0].rstrip().endswith("# PLACEHOLDER"), lines[0]
    site = tmp_path / "webapp.conf"
    site.write_text(
        example.replace(CERT, str(cert))
        .replace(KEY, str(key))
        .replace(STATIC, f"{ROOT / 'static'}/")
        .replace(ACCESS_LOG, str(tmp_path / "webapp.access.log"))
    )
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"{user}\n"
        f"pid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'};\n"
        "events {}\n"
        "http {\n"
        f"{temp_paths}\n"
        f"    access_log {tmp_path / 'access.log'};\n"
        f"    include {site};\n"
        "}\n"
    )
    result = run(
        debian_command("nginx"),
        *("-t", "-p", f"{tmp_path}/", "-c", str(main), "-e", str(tmp_path / "error.log")),
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(output)
    return output


def test_nginx_accepts_the_example_config(tmp_path: Path, certificate: tuple[Path, Path]):
    output = nginx_test(tmp_path, certificate, NGINX_CONF.read_text(encoding="utf-8"))
    assert "test is successful" in output
    # `listen ... http2` is deprecated (not wrong) from nginx 1.25.1; anything else is a flaw.
    warnings = [line for line in output.splitlines() if "[warn]" in line]
    assert [line for line in warnings if "deprecated" not in line] == []


def test_the_nginx_check_does_read_the_example(tmp_path: Path, certificate: tuple[Path, Path]):
    broken = NGINX_CONF.read_text(encoding="utf-8").replace(
        "upstream webapp {", "upstream elsewhere {"
    )
    with pytest.raises(AssertionError, match="host not found in upstream"):
        nginx_test(tmp_path, certificate, broken)


def test_nginx_example_redirects_http_and_sets_tls_and_hsts():
    conf = active(NGINX_CONF.read_text(encoding="utf-8"))
    plain, tls = conf.split("server {")[1:3]
    assert "listen 80;" in plain and "return 301 https://$server_name$request_uri;" in plain
    assert "listen 443 ssl" in tls
    assert re.search(r"ssl_certificate\s+\S+;", tls) and re.search(r"ssl_certificate_key\s", tls)
    assert 'add_header Strict-Transport-Security "max-age=63072000" always;' in tls


def test_nginx_example_sends_what_proxyfix_reads_to_a_kept_alive_upstream():
    conf = active(NGINX_CONF.read_text(encoding="utf-8"))
    for header, value in (
        ("Host", "$host"),
        ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
        ("X-Forwarded-Proto", "$scheme"),
        ("X-Forwarded-Host", "$host"),
        ("X-Forwarded-Port", "$server_port"),
    ):
        assert re.search(rf"proxy_set_header\s+{header}\s+{re.escape(value)};", conf), header
    upstream = block(conf, "upstream webapp")
    assert "server 127.0.0.1:8000" in upstream
    assert re.search(r"keepalive\s+\d+;", upstream)
    assert "proxy_http_version 1.1;" in conf and 'proxy_set_header Connection "";' in conf
    for directive in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"):
        assert re.search(rf"{directive}\s+\d+s;", conf), directive
    # The N-host example: more app servers, shown commented.
    commented = block(NGINX_CONF.read_text(encoding="utf-8"), "upstream webapp")
    assert len(re.findall(r"^\s*# server \d+\.\d+\.\d+\.\d+:8000", commented, re.M)) >= 2


def test_nginx_example_limits_bodies_like_webapp_and_never_caches_the_session():
    conf = active(NGINX_CONF.read_text(encoding="utf-8"))
    assert config.MAX_CONTENT_LENGTH == 1024 * 1024
    assert re.search(r"client_max_body_size\s+1m;", conf)
    session = block(conf, "location = /session")
    assert "proxy_no_cache 1;" in session and "proxy_cache_bypass 1;" in session
    assert "expires" not in session and "add_header" not in session
    # Nothing caches proxied responses or hides webapp's headers (Cache-Control, Set-Cookie,
    # Clear-Site-Data on sign-out).
    for directive in ("proxy_cache ", "proxy_cache_path", "proxy_hide_header", "proxy_ignore"):
        assert directive not in conf, directive
    assert "Clear-Site-Data" in NGINX_CONF.read_text(
        encoding="utf-8"
    )  # the comment saying it passes through


def test_nginx_example_serves_static_files_from_the_checkout():
    conf = active(NGINX_CONF.read_text(encoding="utf-8"))
    static = block(conf, "location ^~ /static/")
    assert f"alias {STATIC};" in static
    # Kept for a year only at a version (pages link /static/...?v=HASH); else revalidated.
    assert "add_header Cache-Control $webapp_static_cache_control always;" in static
    cache = block(conf, "map $arg_v $webapp_static_cache_control")
    assert re.search(r'""\s+"public, no-cache";', cache)
    assert re.search(r'default\s+"public, max-age=31536000, immutable";', cache)
    # add_header in a location drops the server's: HSTS is repeated here.
    assert "Strict-Transport-Security" in static
    assert (ROOT / "static" / "vendor" / "htmx" / "htmx.min.js").is_file()


# --- systemd ---------------------------------------------------------------------------------


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) for every setting of the example unit, in order."""
    entries, section = [], ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(section: str, key: str) -> list[str]:
    return [value for sec, name, value in unit_entries() if (sec, name) == (section, key)]


def test_systemd_accepts_the_example_unit(tmp_path: Path):
    # The unit's paths, moved to this checkout and its virtualenv, so that systemd finds the
    # commands; systemd-analyze exits 0 even on unknown keys, so any output is a failure.
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "gunicorn").exists() and (venv_bin / "flask").exists()
    unit = tmp_path / "webapp.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8")
        .replace("/srv/webapp/.venv/bin", str(venv_bin))
        .replace("/srv/webapp", str(ROOT))
    )
    result = run(debian_command("systemd-analyze"), "verify", "--man=no", str(unit), cwd=tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_runs_gunicorn_after_migrations_with_the_env_file():
    sections = []
    for section, _, _ in unit_entries():
        if section not in sections:
            sections.append(section)
    assert sections == ["Unit", "Service", "Install"]
    assert unit_values("Unit", "Description")
    assert unit_values("Install", "WantedBy") == ["multi-user.target"]
    assert unit_values("Service", "User") == ["webapp"]
    assert unit_values("Service", "EnvironmentFile") == ["/etc/webapp/webapp.env"]
    assert unit_values("Service", "WorkingDirectory") == ["/srv/webapp"]
    (start,) = unit_values("Service", "ExecStart")
    assert start == "/srv/webapp/.venv/bin/gunicorn -c gunicorn.conf.py"
    assert unit_values("Service", "ExecStartPre") == [
        "/srv/webapp/.venv/bin/flask --app webapp db upgrade"
    ]
    assert unit_values("Service", "Restart") == ["on-failure"]


def test_unit_stops_gunicorn_gracefully():
    gunicorn = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert unit_values("Service", "KillSignal") == ["SIGTERM"]  # gunicorn's graceful stop
    (stop,) = unit_values("Service", "TimeoutStopSec")
    assert int(stop.removesuffix("s")) > gunicorn["graceful_timeout"]


def test_unit_is_hardened_and_writes_only_the_instance_folder():
    for key, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
    ):
        assert unit_values("Service", key) == [value], key
    instance = env_assignments()["WEBAPP_INSTANCE_PATH"]
    assert unit_values("Service", "ReadWritePaths") == [instance]
    assert unit_values("Service", "StateDirectory") == [instance.removeprefix("/var/lib/")]


# --- the environment file ----------------------------------------------------------------------


def env_lines() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, value) pairs: the assignments in force, and those commented out."""
    in_force, commented = [], []
    for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(\S*)", line):
            in_force.append((match[1], match[2]))
        elif match := re.fullmatch(r"#([A-Z][A-Z0-9_]*)=(\S*)", line):
            commented.append((match[1], match[2]))
        else:
            assert not line or line.startswith("# ") or line == "#", f"not NAME=value: {line!r}"
    return in_force, commented


def env_assignments() -> dict[str, str]:
    in_force, _ = env_lines()
    assert len({name for name, _ in in_force}) == len(in_force), "a setting is given twice"
    return dict(in_force)


def test_env_file_names_only_real_settings():
    mentioned = set(re.findall(r"WEBAPP_[A-Z0-9_]+", ENV_FILE.read_text(encoding="utf-8")))
    assert mentioned - KNOWN == set()
    assert "INSTANCE_PATH" in (ROOT / "webapp" / "config.py").read_text(encoding="utf-8")
    # The others are gunicorn.conf.py's.
    gunicorn_conf = (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")
    gunicorn_vars = set(re.findall(r'os\.environ\.get\("(\w+)"', gunicorn_conf))
    in_force, commented = env_lines()
    others = {name for name, _ in in_force + commented if not name.startswith("WEBAPP_")}
    assert others <= gunicorn_vars


def test_env_file_documents_every_setting():
    in_force, commented = env_lines()
    named = {name for name, _ in in_force + commented}
    missing = sorted(KNOWN - named)
    assert missing == [], f"add to docs/examples/webapp.env, with a comment: {missing}"


def test_env_file_values_are_valid_settings():
    in_force = env_assignments()
    settings = {**config.defaults(), **config.from_environment(in_force)}
    config.validate(settings)  # the single-host lines in force start webapp as they are
    assert settings["PROXY_HOPS"] == 1 and settings["SECURE_COOKIES"] is True
    assert settings["MAX_CONTENT_LENGTH"] == config.MAX_CONTENT_LENGTH
    assert in_force["BIND"].startswith("127.0.0.1:")
    _, commented = env_lines()
    for name, value in commented:  # each parses to its setting's type
        config.from_environment({name: value})
    assert ("WEBAPP_SESSION_BACKEND", "redis") in commented
    assert any(n == "WEBAPP_REDIS_URL" and v.startswith("redis://") for n, v in commented)
    assert any(
        n == "WEBAPP_DATABASE_URL" and v.startswith("postgresql+psycopg://") for n, v in commented
    )


def test_env_file_trusts_the_host_nginx_serves():
    """Any other Host is a 400: the example's name must be nginx's server_name."""
    trusted = config.trusted_hosts(env_assignments()["WEBAPP_TRUSTED_HOSTS"])
    names = set(re.findall(r"server_name\s+([^;]+);", active(NGINX_CONF.read_text("utf-8"))))
    assert names == {"webapp.example.com"} and trusted == ["webapp.example.com"]


# --- docs/deploy.md --------------------------------------------------------------------------


def test_deploy_guide_covers_what_operators_must_get_right():
    text = DEPLOY_MD.read_text(encoding="utf-8")
    for needed in (
        "noeviction",
        "WEBAPP_PROXY_HOPS",
        "WEBAPP_SECRET_KEY",
        "WEBAPP_TRUSTED_HOSTS",
        "/healthz",
        "flask --app webapp db upgrade",
        "appendonly",
        "statement_timeout",
        "client_max_body_size",
        "make run",
        "tcp_migrate_req",
    ):
        assert needed in text, needed
    for example in ("examples/nginx.conf", "examples/webapp.service", "examples/webapp.env"):
        assert example in text and (DOCS / example).is_file(), example
    assert set(re.findall(r"WEBAPP_[A-Z0-9_]+", text)) - KNOWN == set()
