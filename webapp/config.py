"""Every setting with its default; overridden by instance/config.py, then WEBAPP_* variables.

Standard library and click only: gunicorn.conf.py runs this file in gunicorn's master, to
refuse a bad setting once, before any worker starts, without importing the webapp package.
"""

from __future__ import annotations

import os
import re
import runpy
import sys
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import click

#: Signs CSRF tokens. Left empty, a key is generated once into instance/secret_key (0600) and
#: shared by every worker; several hosts must share one explicit key.
SECRET_KEY = ""
#: SQLAlchemy URL of the user database; empty means SQLite file webapp.db in the instance folder.
DATABASE_URL = ""
#: Where sessions live: "filesystem" (files under instance/sessions, one host) or "redis".
SESSION_BACKEND = "filesystem"
#: The Redis server for SESSION_BACKEND=redis (redis:// or rediss:// URL, database number).
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Seconds without a real request (polls do not count) after which a session ends.
IDLE_TIMEOUT = 1800
#: Seconds after sign-in after which a session ends whatever the activity.
ABSOLUTE_TIMEOUT = 43200
#: At most one session-store write per session per this many seconds to record activity.
TOUCH_INTERVAL = 60
#: How recent (seconds) a sign-in must be for sensitive actions.
FRESH_TIMEOUT = 600
#: Seconds a "remember me" token lasts.
REMEMBER_DURATION = 2592000
#: Seconds between the session widget's polls of /session.
POLL_SECONDS = 5
#: Seconds between a gunicorn worker's background deletions of expired sessions (one worker
#: at a time; each run deletes at most 5,000).
PRUNE_INTERVAL = 60
#: Whether /signup exists.
SIGNUP = True
#: Sign-ups (refused ones included) allowed from one client address per hour; then 429.
SIGNUP_LIMIT = 10
#: Secure, __Host- prefixed cookies. Turn off only for plain HTTP on loopback (make run does).
SECURE_COOKIES = True
#: How many reverse proxies stand in front (for client IP and scheme via X-Forwarded-*).
PROXY_HOPS = 0
#: The host names this site answers to, comma-separated (the Host header, or X-Forwarded-Host
#: through WEBAPP_PROXY_HOPS; the port is not compared). Any other gets 400. ".example.com"
#: also matches every subdomain. The default serves loopback only (`make run`): a server sets
#: its own name. Werkzeug cannot match IPv6 literals here: name the host instead.
TRUSTED_HOSTS = "localhost,127.0.0.1"
#: Argon2id cost parameters (argon2-cffi's RFC 9106 low-memory profile); stored hashes made
#: with other parameters are rehashed at the next sign-in.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_COST = 65536
ARGON2_PARALLELISM = 4
#: Largest accepted request body, in bytes; larger requests get 413.
MAX_CONTENT_LENGTH = 1024 * 1024
#: The site's address as browsers reach it (scheme, host, port; no path): the origin every link
#: in a mail starts with (never the request's Host header), and the only origin passkeys are
#: accepted from.
BASE_URL = "http://127.0.0.1:8000"
#: The WebAuthn relying party id passkeys are bound to; empty means the host of BASE_URL. A
#: registrable domain suffix of that host (e.g. example.com for www.example.com), never an IP.
RP_ID = ""

#: OpenID Connect providers to offer on the sign-in page: comma-separated names (a-z, 0-9, "-",
#: at most 11 characters), each configured by WEBAPP_OIDC_<NAME>_ISSUER, _CLIENT_ID,
#: _CLIENT_SECRET and _LABEL (NAME upper-cased, "-" as "_"; oidc_providers() reads them).
OIDC_PROVIDERS = ""
#: Where mail goes: "file" (each message an .eml file in the instance folder's outbox/), or an
#: SMTP server: smtp://HOST:PORT, smtp+starttls://USER:PASS@HOST:PORT, smtps://USER:PASS@HOST.
MAIL_URL = "file"
#: The sender address of every mail.
MAIL_FROM = "webapp@localhost"
#: Seconds a password-reset link lives.
RESET_TIMEOUT = 1800

#: Whether gunicorn's access log shows the session widget's polls (GET /session, one per open
#: page every POLL_SECONDS). A server setting: gunicorn.conf.py reads it, the app does not.
LOG_POLLS = True

#: The vendored htmx file's Subresource Integrity hash (static/vendor/htmx/VERSION says how to
#: upgrade); not a setting.
HTMX_INTEGRITY = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"

ENV_PREFIX = "WEBAPP_"
SETTINGS = (
    "SECRET_KEY",
    "DATABASE_URL",
    "SESSION_BACKEND",
    "REDIS_URL",
    "IDLE_TIMEOUT",
    "ABSOLUTE_TIMEOUT",
    "TOUCH_INTERVAL",
    "FRESH_TIMEOUT",
    "REMEMBER_DURATION",
    "POLL_SECONDS",
    "PRUNE_INTERVAL",
    "SIGNUP",
    "SIGNUP_LIMIT",
    "SECURE_COOKIES",
    "PROXY_HOPS",
    "TRUSTED_HOSTS",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "MAX_CONTENT_LENGTH",
    "BASE_URL",
    "RP_ID",
    "OIDC_PROVIDERS",
    "MAIL_URL",
    "MAIL_FROM",
    "RESET_TIMEOUT",
)
#: Settings of the server (gunicorn.conf.py), given as WEBAPP_* variables only.
SERVER_SETTINGS = ("LOG_POLLS",)
POSITIVE = {
    "IDLE_TIMEOUT",
    "ABSOLUTE_TIMEOUT",
    "FRESH_TIMEOUT",
    "REMEMBER_DURATION",
    "POLL_SECONDS",
    "PRUNE_INTERVAL",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "MAX_CONTENT_LENGTH",
    "SIGNUP_LIMIT",
    "RESET_TIMEOUT",
}
SESSION_BACKENDS = ("filesystem", "redis")
#: What the whole-number settings count, for messages.
UNITS = {
    "IDLE_TIMEOUT": "seconds",
    "ABSOLUTE_TIMEOUT": "seconds",
    "TOUCH_INTERVAL": "seconds",
    "FRESH_TIMEOUT": "seconds",
    "REMEMBER_DURATION": "seconds",
    "POLL_SECONDS": "seconds",
    "ARGON2_MEMORY_COST": "KiB",
    "MAX_CONTENT_LENGTH": "bytes",
    "RESET_TIMEOUT": "seconds",
}
#: `load()`'s mark for a setting given as a WEBAPP_* variable (else it names the file).
ENVIRONMENT = "environment"
INSTANCE_CONFIG_FILE = "config.py"


class ConfigError(click.ClickException):
    """A setting has a value webapp cannot use; the message names the setting and what it
    accepts. A ClickException, like instance.InstanceError: `flask --app webapp ...` prints
    the message alone, and gunicorn.conf.py logs it as one line."""


def defaults() -> dict[str, Any]:
    """The documented defaults, as a fresh dict."""
    return {name: globals()[name] for name in (*SETTINGS, "HTMX_INTEGRITY")}


def instance_path(environ: Mapping[str, str] = os.environ) -> str:
    """WEBAPP_INSTANCE_PATH; else instance/ beside the package in a checkout, or, installed from
    the wheel (templates/ inside the package), Flask's place: <prefix>/var/webapp-instance."""
    if environ.get(ENV_PREFIX + "INSTANCE_PATH"):
        return os.path.abspath(environ[ENV_PREFIX + "INSTANCE_PATH"])
    package = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(package, "templates")):
        return os.path.join(sys.prefix, "var", "webapp-instance")
    return os.path.join(os.path.dirname(package), "instance")


def _whole_number(name: str, kind: str = "") -> str:
    """What a whole-number setting accepts, in words: "a positive whole number of seconds"."""
    unit = f" of {UNITS[name]}" if name in UNITS else ""
    return f"a {kind}whole number{unit}"


def _parse(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(
            f"{ENV_PREFIX}{name} must be true or false (or 1/0, yes/no, on/off), got {raw!r}"
        )
    if isinstance(default, int):
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(
                f"{ENV_PREFIX}{name} must be {_whole_number(name)} (default {default}), got {raw!r}"
            ) from None
    return raw


def from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The settings given as WEBAPP_<NAME> variables, parsed to their defaults' types."""
    found = {}
    for name in SETTINGS:
        raw = environ.get(ENV_PREFIX + name)
        if raw is not None:
            found[name] = _parse(name, raw, globals()[name])
    return found


def server_settings(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """SERVER_SETTINGS: their defaults, overridden by WEBAPP_* variables."""
    return {
        name: _parse(name, environ[ENV_PREFIX + name], globals()[name])
        if ENV_PREFIX + name in environ
        else globals()[name]
        for name in SERVER_SETTINGS
    }


def load(
    path: str, environ: Mapping[str, str] = os.environ
) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings that `path`/config.py and then the WEBAPP_* variables give, and where each
    came from (ENVIRONMENT, or the file's path), for validate()'s messages."""
    file = os.path.join(path, INSTANCE_CONFIG_FILE)
    given = {}
    if os.path.isfile(file):  # like Flask's from_pyfile: every upper-case name it defines
        given = {k: v for k, v in runpy.run_path(file).items() if k.isupper()}
    sources = dict.fromkeys(given, file)
    from_env = from_environment(environ)
    given.update(from_env)
    sources.update(dict.fromkeys(from_env, ENVIRONMENT))
    from_env = oidc_from_environment(environ)
    given.update(from_env)
    sources.update(dict.fromkeys(from_env, ENVIRONMENT))
    return given, sources


#: The per-provider settings, OIDC_<NAME>_<FIELD>: named by the provider, so not in SETTINGS.
OIDC_FIELDS = ("ISSUER", "CLIENT_ID", "CLIENT_SECRET", "LABEL")
OIDC_REQUIRED = ("ISSUER", "CLIENT_ID", "CLIENT_SECRET")
#: "oidc:<name>" must fit the sign-in history's method column (16 characters).
OIDC_NAME = re.compile(r"[a-z0-9-]{1,11}")
OIDC_SETTING = re.compile(r"OIDC_[A-Z0-9_]+_(?:" + "|".join(OIDC_FIELDS) + ")")


def oidc_from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The WEBAPP_OIDC_<NAME>_<FIELD> variables, as OIDC_<NAME>_<FIELD> settings."""
    return {
        key.removeprefix(ENV_PREFIX): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and OIDC_SETTING.fullmatch(key.removeprefix(ENV_PREFIX))
    }


def oidc_setting(name: str, field: str) -> str:
    """OIDC_<NAME>_<FIELD>: the provider's name upper-cased, "-" as "_"."""
    return f"OIDC_{name.upper().replace('-', '_')}_{field}"


def oidc_providers(config: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each configured provider's settings by name (issuer, client_id, client_secret, label),
    in the order OIDC_PROVIDERS lists them; ConfigError naming the variable when one is bad."""
    providers: dict[str, dict[str, str]] = {}
    for name in (n.strip() for n in str(config["OIDC_PROVIDERS"]).split(",")):
        if not name:
            continue
        if not OIDC_NAME.fullmatch(name):
            raise ConfigError(
                f"{ENV_PREFIX}OIDC_PROVIDERS: {name!r} is not a provider name (1 to 11 of a-z, "
                "0-9 and '-')"
            )
        fields = {f: str(config.get(oidc_setting(name, f)) or "").strip() for f in OIDC_FIELDS}
        for field in OIDC_REQUIRED:
            if not fields[field]:
                raise ConfigError(
                    f"{ENV_PREFIX}{oidc_setting(name, field)} must be set "
                    f"(provider {name!r} is in {ENV_PREFIX}OIDC_PROVIDERS)"
                )
        issuer = fields["ISSUER"]
        parts = urlsplit(issuer)
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
        if not parts.hostname or not (parts.scheme == "https" or loopback):
            raise ConfigError(
                f"{ENV_PREFIX}{oidc_setting(name, 'ISSUER')} must be an https:// URL (http:// "
                f"only on loopback), got {issuer!r}"
            )
        providers[name] = {
            "issuer": issuer.rstrip("/"),
            "client_id": fields["CLIENT_ID"],
            "client_secret": fields["CLIENT_SECRET"],
            "label": fields["LABEL"] or name.replace("-", " ").title(),
        }
    return providers


def validate(config: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> None:
    """Refuse at start-up values that would misbehave later; each message names the setting
    as the user gave it (`sources`, from load()) and what it accepts."""
    sources = sources or {}

    def label(name: str) -> str:
        source = sources.get(name, ENVIRONMENT)
        return f"{ENV_PREFIX}{name}" if source == ENVIRONMENT else f"{name} in {source}"

    def given(name: str) -> str:
        """The setting with its value: as the user set it, or as its default."""
        value, source = config[name], sources.get(name)
        if source == ENVIRONMENT:
            return f"{ENV_PREFIX}{name}={value}"
        if source is not None:
            return f"{name} = {value!r} in {source}"
        return f"{name} (default {value!r})" if value == globals()[name] else f"{name}={value!r}"

    for name in POSITIVE:
        value = config[name]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(
                f"{label(name)} must be {_whole_number(name, 'positive ')}, got {value!r}"
            )
    for name in ("TOUCH_INTERVAL", "PROXY_HOPS"):
        value = config[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(
                f"{label(name)} must be {_whole_number(name)}, zero or more, got {value!r}"
            )
    if config["TOUCH_INTERVAL"] >= config["IDLE_TIMEOUT"]:
        raise ConfigError(f"{given('TOUCH_INTERVAL')} must be shorter than {given('IDLE_TIMEOUT')}")
    if config["SESSION_BACKEND"] not in SESSION_BACKENDS:
        raise ConfigError(
            f"{label('SESSION_BACKEND')} must be one of {', '.join(SESSION_BACKENDS)}, "
            f"got {config['SESSION_BACKEND']!r}"
        )
    if config["SESSION_BACKEND"] == "redis" and not str(config["REDIS_URL"]).startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(
            f"{label('REDIS_URL')} must be a redis://, rediss:// or unix:// URL "
            f"(with {given('SESSION_BACKEND')}), got {config['REDIS_URL']!r}"
        )
    trusted_hosts(config["TRUSTED_HOSTS"])
    base_url = str(config["BASE_URL"])
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"{label('BASE_URL')} must be the site's address: scheme, host and optional port, "
            f"no path (e.g. https://example.com), got {base_url!r}"
        )
    rp_id = relying_party_id(config)
    if not (parts.hostname == rp_id or parts.hostname.endswith("." + rp_id)):
        raise ConfigError(
            f"{label('RP_ID')} must be the host of {given('BASE_URL')} or a domain it belongs "
            f"to, got {rp_id!r}"
        )
    oidc_providers(config)
    _check_mail(config, label)


def relying_party_id(config: Mapping[str, Any]) -> str:
    """RP_ID, or the host of BASE_URL when it is empty."""
    return str(config["RP_ID"]).strip().lower() or (urlsplit(config["BASE_URL"]).hostname or "")


#: The schemes WEBAPP_MAIL_URL accepts besides "file".
MAIL_SCHEMES = ("smtp", "smtp+starttls", "smtps")


def _check_mail(config: Mapping[str, Any], label: Callable[[str], str]) -> None:
    """MAIL_URL names a way to send, MAIL_FROM an address."""
    url = str(config["MAIL_URL"])
    if url != "file":
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme not in MAIL_SCHEMES or not parts.hostname:
            raise ConfigError(
                f"{label('MAIL_URL')} must be file, or smtp://HOST:PORT, "
                "smtp+starttls://USER:PASS@HOST:PORT or smtps://USER:PASS@HOST:PORT"
                f" (got a value starting {url[:12]!r})"
            )
    sender = str(config["MAIL_FROM"])
    if "@" not in sender or any(c in sender for c in "\r\n"):
        raise ConfigError(f"{label('MAIL_FROM')} must be an email address, got {sender!r}")


#: What a host name or an IPv4 address is made of, as Werkzeug accepts it in a Host header.
HOST_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def trusted_hosts(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """TRUSTED_HOSTS as the list Flask's own TRUSTED_HOSTS takes: a comma-separated string
    (or, in instance/config.py, a list) of host names without ports, at least one."""
    names = value.split(",") if isinstance(value, str) else list(value)
    hosts = [str(name).strip().lower() for name in names if str(name).strip()]
    for host in hosts:
        if host.startswith("[") or host.count(":") > 1:
            raise ConfigError(
                f"{ENV_PREFIX}TRUSTED_HOSTS cannot hold an IPv6 address (Werkzeug cannot "
                f"match one): name the host instead, got {host!r}"
            )
        if ":" in host:
            raise ConfigError(
                f"{ENV_PREFIX}TRUSTED_HOSTS takes bare host names (no scheme, no port: the port "
                f"is not compared), got {host!r}"
            )
        labels = host.removeprefix(".").split(".")  # ".example.com": any subdomain too
        if not set(host) <= HOST_NAME_CHARACTERS or not all(labels):
            raise ConfigError(f"{ENV_PREFIX}TRUSTED_HOSTS: {host!r} is not a host name")
    if not hosts:
        raise ConfigError(
            f"{ENV_PREFIX}TRUSTED_HOSTS must name at least one host (the names this site is "
            "reached by, comma-separated)"
        )
    return hosts
