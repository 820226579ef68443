"""gunicorn settings for webapp: `gunicorn -c gunicorn.conf.py wsgi:app`.

gthread workers keep connections alive and let a slow sign-in (Argon2 by design) share a
worker with fast /session polls (2 workers x 8 threads by default), each worker on a listening
socket of its own (reuse_port).

The master checks webapp's settings before any worker starts. It runs webapp/config.py and
webapp/instance.py as files of their own (standard library and click only) rather than importing
the webapp package: the workers a HUP starts must load the code on disk, not inherit the old.
"""

import importlib.util
import os
import socket
import sys
from types import ModuleType

import click
from gunicorn import glogging


def _webapp_file(name: str) -> ModuleType:
    """webapp/<name>.py, run as a module outside the webapp package."""
    package = importlib.util.find_spec("webapp")
    assert package is not None and package.origin is not None, "webapp is not installed"
    path = os.path.join(os.path.dirname(package.origin), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"gunicorn_conf_webapp_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_settings = _webapp_file("config")
_instance = _webapp_file("instance")
INSTANCE_PATH = _settings.instance_path()
#: The session widget's polls; WEBAPP_LOG_POLLS=false leaves them out of the access log.
POLL_PATH = "/session"

wsgi_app = "wsgi:app"
bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
# 8 threads: a sign-in holds its thread while Argon2 runs (by design, ~0.2 s); with 4, a few
# sign-ins left polls half the threads (measured: 0.5x poll throughput during sign-ins; 8
# threads kept it above 0.7x). docs/benchmarks.md has the figures.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# In the instance folder, not gunicorn 27's default (one path per user, shared by all of that
# user's gunicorns, each unlinking the one before); `gunicornc -s PATH` talks to it.
control_socket = os.path.join(INSTANCE_PATH, "gunicorn.ctl")
timeout = 30
# Request size limits (gunicorn's defaults, stated because webapp relies on them): gunicorn
# answers a longer request line 414, a larger header field (a huge cookie) or more header
# fields 431, before the app runs. The body's limit is the app's WEBAPP_MAX_CONTENT_LENGTH
# (413). A `next` of 2048 characters (safe_redirect's limit) fits in the request line.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
graceful_timeout = 10
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# One listening socket per worker (SO_REUSEPORT), so the kernel spreads new connections over
# the workers evenly. On one shared socket whichever worker wakes first takes a burst of them:
# measured, a proxy's (or wrk's) few keep-alive connections all landed on one worker in about
# a third of runs, and polls got one worker's throughput while the other idled (docs/benchmarks.md,
# "Target 6"). The cost: connections still queued on a worker that dies are reset, unless the
# kernel hands them on (sysctl net.ipv4.tcp_migrate_req=1; docs/deploy.md).
reuse_port = True


class AccessLogWithoutPolls(glogging.Logger):
    """gunicorn's logger, less the access lines of GET /session (the widget's polls: one per
    open page every few seconds)."""

    def access(self, resp, req, environ, request_time):
        if environ.get("PATH_INFO") == POLL_PATH and environ.get("REQUEST_METHOD") == "GET":
            return
        super().access(resp, req, environ, request_time)


try:
    if not _settings.server_settings()["LOG_POLLS"]:
        logger_class = AccessLogWithoutPolls
except click.ClickException:  # on_starting refuses it in one line; a HUP keeps the default
    pass


#: The settings the banner tells: set by the master, read by the first worker.
_banner_settings: dict = {}


def on_starting(server):
    """Refuse bad settings, then an address another program listens on, with one clear line
    each, before any worker starts."""
    _refuse_bad_settings(server)
    _refuse_a_taken_address(server)


def _refuse_bad_settings(server):
    """Each worker would refuse them too, but all at once: the message once per worker and,
    when all fail together, a traceback of gunicorn 27's own. Also creates the instance folder
    0700 before the control socket goes there."""
    try:
        _instance.ensure_private_folder(INSTANCE_PATH)
        given, sources = _settings.load(INSTANCE_PATH)
        _settings.validate({**_settings.defaults(), **given}, sources)
        _settings.server_settings()
    except click.ClickException as refusal:
        server.log.error("%s", refusal.format_message())
        sys.exit(1)
    _banner_settings.update({**_settings.defaults(), **given})


def _refuse_a_taken_address(server):
    """With reuse_port the workers bind, not the master: gunicorn would retry and respawn them
    forever, and another server that also sets SO_REUSEPORT would silently share the port.
    Sockets that cannot be shared that way use one socket for all workers: a Unix socket (each
    worker would replace the file) and sockets handed over by systemd."""
    if os.environ.get("LISTEN_FDS") or not all(
        isinstance(address, tuple) for address in server.cfg.address
    ):
        server.cfg.set("reuse_port", False)
        return
    if server.master_pid:  # a USR2 upgrade: the old master's workers share the port on purpose
        return
    for host, port, *_ in server.cfg.address:
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR as gunicorn's own sockets: connections of a server that just stopped
            # (TIME_WAIT) do not count; a listening socket does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                server.log.error("Cannot listen at %s:%s: %s", host, port, error.strerror)
                sys.exit(1)


def post_worker_init(worker):
    """Each worker prunes expired sessions in the background, one at a time (a file lock)."""
    from webapp.sessions.pruning import start_background

    start_background(worker.wsgi)


def post_fork(server, worker):
    """With reuse_port, gunicorn's master logs "Listening at:" with no address (its workers
    bind, not the master): each worker logs its own. Under `make run` (RUN_BANNER=1), the
    first worker prints the banner once it listens."""
    if not server.LISTENERS:
        addresses = ",".join(str(listener) for listener in worker.sockets)
        server.log.info("Listening at: %s (worker %s)", addresses, worker.pid)
    if os.environ.get("RUN_BANNER") == "1" and worker.age == 1:
        print(_banner(str(worker.sockets[0]), _banner_settings), file=sys.stderr, flush=True)


def _banner(url: str, settings: dict) -> str:
    """What `make run` says once the server listens: where, how cookies are sent, and how to
    make the first account."""
    flask = os.path.relpath(os.path.join(os.path.dirname(sys.executable), "flask"))
    lines = [f"webapp: serving {url}/  (Ctrl-C stops)"]
    if settings["SECURE_COOKIES"]:
        lines += [
            "  Secure cookies are ON (WEBAPP_SECURE_COOKIES=true): browsers send them over HTTPS",
            "  only, so signing in needs TLS in front; for plain HTTP on loopback, set it false.",
        ]
    else:
        lines += [
            "  Secure cookies are OFF (WEBAPP_SECURE_COOKIES=false): plain HTTP is for loopback",
            "  development only; behind TLS leave them on.",
        ]
    signup = f"open {url}/signup, or run" if settings["SIGNUP"] else "run"
    lines += [f"  First account: {signup}", f"    {flask} --app webapp users create YOURNAME"]
    return "\n".join(lines)
