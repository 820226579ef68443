"""Benchmark-only routes (WEBAPP_BENCHMARK=true; never on in production): a bare JSON route to
compare the poll against, and counters of what the app wrote, so that `make bench` counts
store writes and database queries per poll instead of assuming them."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify
from sqlalchemy import event

from .db import engine_of
from .session_store import session_interface

bp = Blueprint("bench", __name__, url_prefix="/__bench")
COUNTS = {"store_writes": 0, "store_deletes": 0, "db_queries": 0, "db_writes": 0}


@bp.get("/bare")
def bare() -> Response:
    """The baseline: a JSON answer through the same app, hooks and server, doing nothing."""
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


def init_app(app: Flask) -> None:
    if not app.config["BENCHMARK"]:
        return
    app.register_blueprint(bp)
    from .extensions import csrf

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
    interface._delete_session = counted_delete
