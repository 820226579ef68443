"""The database engine, a SQLAlchemy session per request, and table creation at start."""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .models import Base

SQLITE_BUSY_TIMEOUT_MS = 5000


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
    return create_engine(url, pool_pre_ping=True)


def create_tables(engine: Engine, attempts: int = 5) -> None:
    """Create missing tables; several workers starting at once may race, so retry."""
    for attempt in range(attempts):
        try:
            Base.metadata.create_all(engine)
            return
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def init_app(app: Flask) -> None:
    engine = make_engine(database_url(app))
    create_tables(engine)
    app.extensions["webapp.db"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(close_db)


def get_db() -> Session:
    """The request's database session, opened on first use."""
    if "db" not in g:
        g.db = current_app.extensions["webapp.db"]()
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
