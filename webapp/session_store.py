"""Server-side session storage: Flask-Session's cachelib interface on a private FileSystemCache.

The store is made explicitly (not by Flask-Session's defaults) because cachelib's default
threshold of 500 deletes live sessions once 500 files exist; threshold=0 never prunes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cachelib.file import FileSystemCache
from flask import Flask, Request, Response, g, session
from flask_session.base import ServerSideSession
from flask_session.cachelib import CacheLibSessionInterface

from .instance import ensure_private_folder

logger = logging.getLogger(__name__)

KEY_PREFIX = "session:"
SID_BYTES = 32


class WebappSessionInterface(CacheLibSessionInterface):
    """Flask-Session's interface plus webapp's rules: read-only requests never write, a bad
    entry is no session, and a cookie is deleted with the attributes it was set with."""

    #: Decides whether a modified session may still be stored; session_policy sets it so that
    #: a request running while its session is revoked cannot write the session back.
    write_guard: Callable[[ServerSideSession], bool] | None = None
    #: The store TTL for a session; session_policy sets it to the session's remaining life, so
    #: that no entry outlives its timeouts. Unset: PERMANENT_SESSION_LIFETIME.
    lifetime: Callable[[ServerSideSession], timedelta] | None = None

    def _upsert_session(
        self, session_lifetime: timedelta, session: ServerSideSession, store_id: str
    ) -> None:
        if self.lifetime is not None:
            session_lifetime = self.lifetime(session)
        super()._upsert_session(session_lifetime, session, store_id)

    def _get_store_id(self, sid: str) -> str:
        """Entries are keyed by SHA-256 of the session id, as the session index is: a listing
        of the store or of the index gives no usable session id."""
        return self.key_prefix + hashlib.sha256(sid.encode()).hexdigest()

    def open_session(self, app: Flask, request: Request) -> ServerSideSession:
        session = super().open_session(app, request)
        cookie = request.cookies.get(app.config["SESSION_COOKIE_NAME"])
        # Flask-Session never adopts an unknown id: it makes a new one, so a differing id
        # means the cookie named no live session (expired, ended, or made up).
        session.stale_cookie = bool(cookie) and cookie != session.sid
        if session.stale_cookie:
            logger.info("session cookie names no live session; treated as signed out")
        return session

    def _retrieve_session_data(self, store_id: str) -> dict[str, Any] | None:
        try:
            data = self.cache.get(store_id)
        except Exception:  # cachelib lets UnicodeDecodeError, MemoryError... through
            logger.warning("damaged session entry ignored", exc_info=True)
            return None
        if data is not None and not isinstance(data, dict):
            logger.warning("session entry of type %s ignored", type(data).__name__)
            return None
        return data

    def delete_entry(self, session: ServerSideSession) -> None:
        """Remove the session's stored entry (the cookie is left to the response)."""
        self._delete_session(self._get_store_id(session.sid))

    def delete_by_hash(self, sid_hash: str) -> None:
        """Remove an entry known only by the hash of its id (revocation from the index)."""
        self._delete_session(self.key_prefix + sid_hash)

    def save_session(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        if g.get("read_only_session"):
            return
        if not session and (session.modified or getattr(session, "stale_cookie", False)):
            if session.modified:
                self.delete_entry(session)
            self.delete_cookie(app, response)
            return
        if session.modified and self.write_guard and not self.write_guard(session):
            logger.info("not storing a session that was ended while this request ran")
            self.delete_entry(session)
            return
        super().save_session(app, session, response)

    def delete_cookie(self, app: Flask, response: Response) -> None:
        """Delete the session cookie; a __Host- cookie is only deleted with Secure and Path=/."""
        response.delete_cookie(
            self.get_cookie_name(app),
            path=self.get_cookie_path(app),
            domain=self.get_cookie_domain(app),
            secure=self.get_cookie_secure(app),
            httponly=self.get_cookie_httponly(app),
            samesite=self.get_cookie_samesite(app),
        )
        response.vary.add("Cookie")


def store_folder(app: Flask) -> str:
    return os.path.join(app.instance_path, "sessions")


def init_app(app: Flask) -> None:
    folder = store_folder(app)
    ensure_private_folder(folder)
    cache = FileSystemCache(folder, threshold=0, mode=0o600)
    app.session_interface = WebappSessionInterface(
        client=cache, key_prefix=KEY_PREFIX, permanent=False, sid_length=SID_BYTES
    )


def session_interface(app: Flask) -> WebappSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, WebappSessionInterface)
    return interface


def ping(app: Flask) -> None:
    """Raise if the store cannot be read and written."""
    folder = store_folder(app)
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise OSError(f"session folder {folder} is not readable and writable")
    session_interface(app).cache.get(KEY_PREFIX + "healthz")


def current_session() -> ServerSideSession:
    """flask.session as the server-side session it is (Flask types it as the base mixin)."""
    current = session._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(current, ServerSideSession)
    return current
