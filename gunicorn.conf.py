"""gunicorn settings for webapp: `gunicorn -c gunicorn.conf.py wsgi:app`.

gthread workers keep connections alive and let a slow sign-in (Argon2 by design) share a
worker with fast /session polls (2 workers x 8 threads by default).
"""

import os

wsgi_app = "wsgi:app"
bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
# 8 threads: a sign-in holds its thread while Argon2 runs (by design, ~0.2 s); with 4, a few
# sign-ins left polls half the threads (measured: 0.5x poll throughput during sign-ins; 8
# threads kept it above 0.7x). BENCHMARKS.md has the figures.
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


def post_worker_init(worker):
    """Each worker prunes expired sessions in the background, one at a time (a file lock)."""
    from webapp.pruning import start_background

    start_background(worker.wsgi)
