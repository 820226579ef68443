"""Deleting expired sessions: their store entries and index rows, and expired remember-me
tokens.

Signed-in sessions are found through the index (by its indexed timestamps), so the work is
proportional to what is deleted, in batches of bounded size. A sweep of the store folder
catches entries the index does not know (anonymous sessions holding a basket, leftovers of a
crash); it reads
only each file's 4-byte expiry header, streaming, so memory stays flat, and deletes cachelib's
temporary files that a crash or a failed write (disk full) left behind, once they are old
enough that no write can still be using them. Gunicorn workers prune
in a background thread at a bounded rate (gunicorn.conf.py's post_worker_init starts it),
never inside a request.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from cachelib.file import FileSystemCache
from flask import Flask
from sqlalchemy import delete, or_, select

from .. import clock
from ..db import get_db
from ..models import UserSession
from . import remember
from .files import store_folder
from .store import session_interface

logger = logging.getLogger(__name__)

BATCH = 500
#: The most a background run deletes (the rest waits for the next, PRUNE_INTERVAL later).
BACKGROUND_LIMIT = 5000
#: The folder sweep reads every file: at most about once per this many seconds.
SWEEP_SECONDS = 3600
#: cachelib writes an entry to a temporary file with this suffix, then renames it into place.
TEMPORARY_SUFFIX = FileSystemCache._fs_transaction_suffix
#: A write takes milliseconds: a temporary file this many seconds old was abandoned (a killed
#: worker, a full disk). A younger one is left alone, since deleting it would fail its write.
TEMPORARY_GRACE = 600


def prune_index(limit: int | None = None) -> int:
    """Delete expired signed-in sessions found through the index; how many were deleted."""
    from flask import current_app

    config = current_app.config
    now = clock.utcnow()
    expired = or_(
        UserSession.last_active_at <= now - timedelta(seconds=config["IDLE_TIMEOUT"]),
        UserSession.created_at <= now - timedelta(seconds=config["ABSOLUTE_TIMEOUT"]),
    )
    interface = session_interface(current_app)
    db = get_db()
    deleted = 0
    while limit is None or deleted < limit:
        size = BATCH if limit is None else min(BATCH, limit - deleted)
        rows = db.execute(select(UserSession.id, UserSession.sid_hash).where(expired).limit(size))
        batch = list(rows)
        if not batch:
            break
        for _ref, sid_hash in batch:
            interface.delete_by_hash(sid_hash)
        db.execute(delete(UserSession).where(UserSession.id.in_([ref for ref, _ in batch])))
        db.commit()
        deleted += len(batch)
    return deleted


def _expired_files(folder: str, now: float) -> Iterator[str]:
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False) or entry.name.startswith("."):
                continue
            if entry.name.endswith(TEMPORARY_SUFFIX):
                try:
                    written = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:  # renamed into place meanwhile
                    continue
                if written < now - TEMPORARY_GRACE:
                    yield entry.path
                continue
            try:
                with open(entry.path, "rb") as handle:
                    header = handle.read(4)
            except OSError:
                continue
            if len(header) < 4:
                yield entry.path  # damaged: never readable as a session
                continue
            (expires,) = struct.unpack("I", header)
            if expires != 0 and expires < now:
                yield entry.path


def sweep_store(app: Flask, limit: int | None = None) -> int:
    """Delete store files whose own expiry has passed (cachelib's header, real time). Redis
    expires its keys itself: nothing to sweep there."""
    if app.config["SESSION_BACKEND"] != "filesystem":
        return 0
    deleted = 0
    for path in _expired_files(store_folder(app), time.time()):
        try:
            os.unlink(path)
            deleted += 1
        except FileNotFoundError:
            pass
        if limit is not None and deleted >= limit:
            break
    return deleted


def prune(app: Flask, limit: int | None = None, sweep: bool = True) -> dict[str, int]:
    with app.app_context():
        counts = {"index": prune_index(limit), "remember": remember.prune_expired(limit, BATCH)}
    counts["store"] = sweep_store(app, limit) if sweep else 0
    return counts


def _run_forever(app: Flask, runs: int | None = None) -> None:
    interval = app.config["PRUNE_INTERVAL"]
    sweep_every = max(1, SWEEP_SECONDS // max(1, interval))
    lock_path = os.path.join(app.instance_path, ".prune.lock")
    run = 0
    unfinished_sweep = False
    while runs is None or run < runs:
        time.sleep(interval)
        run += 1
        try:
            with open(lock_path, "a") as lock:
                try:  # one worker (of any host sharing the folder) prunes at a time
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                # A sweep that hit its limit (many expired anonymous baskets) goes on at the
                # next run rather than an hour later: deleting keeps up with creating.
                sweep = unfinished_sweep or (run - 1) % sweep_every == 0
                counts = prune(app, limit=BACKGROUND_LIMIT, sweep=sweep)
                unfinished_sweep = counts["store"] >= BACKGROUND_LIMIT
            if any(counts.values()):
                logger.info("pruned expired sessions: %s", counts)
        except Exception:
            logger.exception("background pruning failed; trying again later")


def start_background(app: Any) -> None:
    """Start the pruning thread (gunicorn's post_worker_init calls this with the WSGI app it
    loaded: the Flask app, or a wrapper holding it as `.app`, as the poll fast path does)."""
    flask_app = app if isinstance(app, Flask) else getattr(app, "app", None)
    if not isinstance(flask_app, Flask) or "webapp.db" not in flask_app.extensions:
        # Another app served with webapp's gunicorn.conf.py (the bench's bare Flask app).
        logger.info("background pruning not started: %r is not webapp's app", app)
        return
    threading.Thread(target=_run_forever, args=(flask_app,), daemon=True, name="prune").start()
    logger.info("pruning expired sessions every %s s", flask_app.config["PRUNE_INTERVAL"])
