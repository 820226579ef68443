"""A free loopback port for the servers the tests and benchmarks start (gunicorn, redis-server,
PostgreSQL). Chosen before the server starts: gunicorn with reuse_port would give each worker
a port of its own if it bound port 0, and the others are told their port on the command line."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on now; another process may take it first, so callers retry."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
