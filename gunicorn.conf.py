"""gunicorn settings for webapp: `gunicorn -c gunicorn.conf.py wsgi:app`.

gthread workers keep connections alive and let a slow sign-in (Argon2 by design) share a
worker with fast /session polls (2 workers x 8 threads by default), each worker on a listening
socket of its own (reuse_port).
"""

import os
import socket
import sys

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


def on_starting(server):
    """Refuse, with one clear line, an address another program listens on. With reuse_port
    the workers bind, not the master: gunicorn would retry and respawn them forever, and
    another server that also sets SO_REUSEPORT would silently share the port. Sockets that
    cannot be shared that way use one socket for all workers: a Unix socket (each worker would
    replace the file) and sockets handed over by systemd."""
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
