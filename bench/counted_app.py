"""The app as `make bench` serves it: webapp's own app (create_app(), as wsgi.py builds it) plus
a bare JSON route inside it and counters of what the app wrote, so that the bench counts store
writes and database queries per poll instead of assuming them. Benchmark-only: it lives here,
never in the webapp package. gunicorn: `--pythonpath bench 'counted_app:create_counted_app()'`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify
from sqlalchemy import event

from webapp import create_app
from webapp.db import engine_of
from webapp.extensions import csrf
from webapp.sessions.store import session_interface

bp = Blueprint("bench", __name__, url_prefix="/__bench")
COUNTS = {"store_writes": 0, "store_deletes": 0, "db_queries": 0, "db_writes": 0}
#: gunicorn's argument for this app.
WSGI_APP = "counted_app:create_counted_app()"


@bp.get("/bare")
def bare() -> Response:
    """A JSON answer through the same app, hooks and server, doing nothing."""
    return jsonify(message="hello")


@bp.get("/counts")
def counts() -> Response:
    return jsonify(COUNTS)


@bp.post("/counts/reset")
def reset() -> Response:
    for key in COUNTS:
        COUNTS[key] = 0
    return jsonify(COUNTS)


def _count_queries(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    COUNTS["db_queries"] += 1
    if not statement.lstrip().upper().startswith(("SELECT", "PRAGMA")):
        COUNTS["db_writes"] += 1


def instrument(app: Flask) -> Flask:
    """Add the bare route and the counters to a built app."""
    app.register_blueprint(bp)
    csrf.exempt(bp)
    event.listen(engine_of(app), "before_cursor_execute", _count_queries)
    interface = session_interface(app)
    upsert, delete = interface._upsert_session, interface._delete_session

    def counted_upsert(*args: Any) -> None:
        COUNTS["store_writes"] += 1
        upsert(*args)

    def counted_delete(*args: Any) -> None:
        COUNTS["store_deletes"] += 1
        delete(*args)

    interface._upsert_session = counted_upsert  # type: ignore[method-assign,assignment]
    interface._delete_session = counted_delete  # type: ignore[method-assign]
    return app


def create_counted_app(test_config: Any = None) -> Flask:
    return instrument(create_app(test_config))
