"""gunicorn settings for webapp: `gunicorn -c gunicorn.conf.py wsgi:app`.

gthread workers keep connections alive and let a slow sign-in (Argon2 by design) share a
worker with fast /session polls.
"""

import os

wsgi_app = "wsgi:app"
bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
timeout = 30
graceful_timeout = 10
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker):
    """Each worker prunes expired sessions in the background, one at a time (a file lock)."""
    from webapp.pruning import start_background

    start_background(worker.wsgi)
