"""The database engine, a SQLAlchemy session per request, and the schema check at start.

At start the schema must be at the latest migration (schema.ensure_schema: an empty database is
migrated under a lock, anything else behind stops the start with a message).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click
from flask import Flask, current_app, g
from flask.cli import ScriptInfo
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from .schema import ensure_schema

SQLITE_BUSY_TIMEOUT_MS = 5000
#: PostgreSQL cancels any statement running longer: a frozen server or a stuck lock fails the
#: request instead of hanging the worker thread (gunicorn's gthread heartbeat would not notice).
#: Migrations lift it for their own transaction.
POSTGRES_STATEMENT_TIMEOUT_MS = 5000
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "options": f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MS}",
    # A server that vanishes without closing the connection is noticed within about a minute.
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
#: app.extensions key: under the flask command line the schema is checked on first use.
SCHEMA_PENDING = "webapp.db.schema_pending"

log = logging.getLogger(__name__)


def database_url(app: Flask) -> str:
    """The configured URL, or SQLite in the instance folder."""
    return app.config["DATABASE_URL"] or "sqlite:///" + os.path.join(app.instance_path, "webapp.db")


def _enable_sqlite_concurrency(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers and one writer work at once; the busy timeout makes writers wait."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _enable_sqlite_concurrency)
        return engine
    parsed = make_url(url)
    if parsed.drivername == "postgresql":  # SQLAlchemy's default driver is psycopg2: use psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql":
        # pool_pre_ping: after a server restart each pooled connection would fail once.
        return create_engine(parsed, pool_pre_ping=True, connect_args=POSTGRES_CONNECT_ARGS)
    return create_engine(parsed, pool_pre_ping=True)


def _flask_command() -> str | None:
    """The `flask` subcommand loading the app (its click context is active), if any."""
    context = click.get_current_context(silent=True)
    if context is None or context.find_object(ScriptInfo) is None:
        return None
    return context.command.name


def init_app(app: Flask) -> None:
    engine = make_engine(database_url(app))
    app.extensions["webapp.db"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(close_db)
    if _flask_command() not in (None, "run"):
        # `flask --app webapp db upgrade|check|current` must load the app whatever state the
        # database is in (or whether it answers): other commands check it on first use.
        # `flask run` serves requests: it checks at start, as gunicorn does.
        app.extensions[SCHEMA_PENDING] = True
    else:
        ensure_schema(engine)


def get_db() -> Session:
    """The request's database session, opened on first use.

    A session whose flush failed (e.g. "database is locked": the request answers 503) is
    rolled back here before it is used again: the answer to a failed request still reads the
    database (the session store's write guard does), and would otherwise fail with
    PendingRollbackError, a 500 instead of the 503.
    """
    if "db" not in g:
        if current_app.extensions.get(SCHEMA_PENDING):
            ensure_schema(engine_of(current_app))
            current_app.extensions[SCHEMA_PENDING] = False
        g.db = current_app.extensions["webapp.db"]()
    elif not g.db.is_active:
        g.db.rollback()
    return g.db


def engine_of(app: Flask) -> Engine:
    engine = app.extensions["webapp.db"].kw["bind"]
    assert isinstance(engine, Engine)
    return engine


def ping() -> None:
    """Raise if the database does not answer."""
    get_db().execute(text("SELECT 1"))


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()
