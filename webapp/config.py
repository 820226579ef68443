"""Every setting with its default; overridden by instance/config.py, then WEBAPP_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

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
#: Whether /signup exists.
SIGNUP = True
#: Sign-ups (refused ones included) allowed from one client address per hour; then 429.
SIGNUP_LIMIT = 10
#: Secure, __Host- prefixed cookies. Turn off only for plain HTTP on loopback (make run does).
SECURE_COOKIES = True
#: How many reverse proxies stand in front (for client IP and scheme via X-Forwarded-*).
PROXY_HOPS = 0
#: Argon2id cost parameters (argon2-cffi's RFC 9106 low-memory profile); stored hashes made
#: with other parameters are rehashed at the next sign-in.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_COST = 65536
ARGON2_PARALLELISM = 4
#: Largest accepted request body, in bytes; larger requests get 413.
MAX_CONTENT_LENGTH = 1024 * 1024

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
    "SIGNUP",
    "SIGNUP_LIMIT",
    "SECURE_COOKIES",
    "PROXY_HOPS",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "MAX_CONTENT_LENGTH",
)
POSITIVE = {
    "IDLE_TIMEOUT",
    "ABSOLUTE_TIMEOUT",
    "FRESH_TIMEOUT",
    "REMEMBER_DURATION",
    "POLL_SECONDS",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "MAX_CONTENT_LENGTH",
    "SIGNUP_LIMIT",
}
SESSION_BACKENDS = ("filesystem", "redis")


class ConfigError(ValueError):
    """A setting has a value webapp cannot use; the message names the setting."""


def defaults() -> dict[str, Any]:
    """The documented defaults, as a fresh dict."""
    return {name: globals()[name] for name in (*SETTINGS, "HTMX_INTEGRITY")}


def _parse(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{ENV_PREFIX}{name} must be true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name} must be a whole number, got {raw!r}") from None
    return raw


def from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The settings given as WEBAPP_<NAME> variables, parsed to their defaults' types."""
    found = {}
    for name in SETTINGS:
        raw = environ.get(ENV_PREFIX + name)
        if raw is not None:
            found[name] = _parse(name, raw, globals()[name])
    return found


def validate(config: Mapping[str, Any]) -> None:
    """Refuse at start-up, with the setting's name, values that would misbehave later."""
    for name in POSITIVE:
        value = config[name]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{ENV_PREFIX}{name} must be a positive whole number, got {value!r}")
    for name in ("TOUCH_INTERVAL", "PROXY_HOPS"):
        if not isinstance(config[name], int) or config[name] < 0:
            raise ConfigError(f"{ENV_PREFIX}{name} must be zero or more, got {config[name]!r}")
    if config["TOUCH_INTERVAL"] >= config["IDLE_TIMEOUT"]:
        raise ConfigError(f"{ENV_PREFIX}TOUCH_INTERVAL must be shorter than IDLE_TIMEOUT")
    if config["SESSION_BACKEND"] == "redis" and not str(config["REDIS_URL"]).startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(
            f"{ENV_PREFIX}REDIS_URL must be a redis:// URL, got {config['REDIS_URL']!r}"
        )
    if config["SESSION_BACKEND"] not in SESSION_BACKENDS:
        raise ConfigError(
            f"{ENV_PREFIX}SESSION_BACKEND must be one of {', '.join(SESSION_BACKENDS)}, "
            f"got {config['SESSION_BACKEND']!r}"
        )
