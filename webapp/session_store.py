"""Server-side session storage: Flask-Session's interfaces with webapp's rules on top.

Two stores: files (Flask-Session's cachelib interface on a private FileSystemCache, the
embedded default) and Redis (several hosts). Both are made explicitly, not by Flask-Session's
defaults: cachelib's default threshold of 500 deletes live sessions once 500 files exist
(threshold=0 never prunes), and Flask-Session's Redis decoder falls back to pickle.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
from cachelib.file import FileSystemCache
from flask import Flask, Request, Response, g, request, session
from flask_session.base import ServerSideSession, ServerSideSessionInterface
from flask_session.cachelib import CacheLibSessionInterface
from flask_session.redis import RedisSessionInterface as FlaskSessionRedisInterface
from itsdangerous import BadSignature, TimestampSigner
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .instance import ensure_private_folder

logger = logging.getLogger(__name__)


#: Errors that mean "the session store is down": the app answers 503 and recovers by itself.
class StoreWriteError(Exception):
    """The file store could not write a session."""


STORE_OUTAGES: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    StoreWriteError,
)
OUTAGE_MESSAGE = "The session store is not answering; try again in a moment."
#: Endpoints that work without a session: static files, and the health check naming outages.
OUTAGE_EXEMPT = frozenset({"static", "pages.healthz"})

KEY_PREFIX = "session:"
SID_BYTES = 32
CSRF_KEY = "csrf_token"  # Flask-WTF's session key
#: What an anonymous visitor's session may hold and still live in a cookie, not the store.
ANONYMOUS_KEYS = frozenset({CSRF_KEY, "_permanent"})


class AnonymousCsrfCookie:
    """An anonymous visitor's CSRF token, in a signed cookie instead of the session store.

    Every page with a form needs a token, so a server-side session per anonymous visit would
    let anyone fill the store (and evict nothing, threshold 0: only disk). Signed with the
    secret key and `__Host-` scoped, the cookie cannot be forged or planted from a subdomain;
    Flask-WTF still compares the form's token with session["csrf_token"], filled from it.
    """

    SALT = "webapp-anonymous-csrf"

    def __init__(self, app: Flask) -> None:
        self.name = "__Host-csrf" if app.config["SESSION_COOKIE_SECURE"] else "csrf"
        self.max_age = app.config["ABSOLUTE_TIMEOUT"]
        self.secure = app.config["SESSION_COOKIE_SECURE"]
        self.signer = TimestampSigner(app.secret_key or "", salt=self.SALT)

    def read(self, request: Request) -> str | None:
        value = request.cookies.get(self.name)
        if not value:
            return None
        try:
            return self.signer.unsign(value, max_age=self.max_age).decode()
        except BadSignature:
            return None

    def write(self, response: Response, token: str) -> None:
        response.set_cookie(
            self.name,
            self.signer.sign(token).decode(),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def delete(self, response: Response) -> None:
        response.delete_cookie(
            self.name, path="/", secure=self.secure, httponly=True, samesite="Lax"
        )


class WebappSessionRules(ServerSideSessionInterface):
    """webapp's rules for any Flask-Session store: read-only requests never write, entries are
    keyed by a hash of the id, a bad entry is no session, anonymous sessions stay out of the
    store, and a cookie is deleted with the attributes it was set with."""

    #: Decides whether a modified session may still be stored; session_policy sets it so that
    #: a request running while its session is revoked cannot write the session back.
    write_guard: Callable[[ServerSideSession], bool] | None = None
    #: The store TTL for a session; session_policy sets it to the session's remaining life, so
    #: that no entry outlives its timeouts. Unset: PERMANENT_SESSION_LIFETIME.
    lifetime: Callable[[ServerSideSession], timedelta] | None = None
    csrf_cookie: AnonymousCsrfCookie

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
        try:
            session = super().open_session(app, request)
        except STORE_OUTAGES as error:
            # Flask opens the session before any error handler can run: remember the outage
            # and let refuse_during_outage() answer 503 (and the store recover by itself).
            logger.error("session store unavailable: %s", error)
            session = self.session_class(sid=self._generate_sid(self.sid_length))
            session.outage = True
            return session
        cookie = request.cookies.get(app.config["SESSION_COOKIE_NAME"])
        # Flask-Session never adopts an unknown id: it makes a new one, so a differing id
        # means the cookie named no live session (expired, ended, or made up).
        session.stale_cookie = bool(cookie) and cookie != session.sid
        if session.stale_cookie:
            logger.info("session cookie names no live session; treated as signed out")
        session.from_store = bool(cookie) and cookie == session.sid
        if not session.from_store and (token := self.csrf_cookie.read(request)):
            dict.__setitem__(session, CSRF_KEY, token)  # as if stored: not a modification
        return session

    def ping(self) -> None:
        """Raise if the store does not answer."""
        raise NotImplementedError

    @staticmethod
    def _as_session(data: Any) -> dict[str, Any] | None:
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
        if g.get("read_only_session") or getattr(session, "outage", False):
            return
        try:
            self._save(app, session, response)
        except STORE_OUTAGES as error:
            # The answer promised a session that was not stored: say so instead.
            logger.error("session store unavailable while saving: %s", error)
            outage_response(response)

    def _save(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        if "_user_id" in session and self.csrf_cookie.name in request.cookies:
            self.csrf_cookie.delete(response)  # signed in: the token lives in the session now
        if CSRF_KEY in session and session.keys() <= ANONYMOUS_KEYS:
            self._save_anonymous(app, session, response)
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

    def _save_anonymous(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        """Keep an anonymous session that holds only its CSRF token out of the store."""
        if session.modified or self.csrf_cookie.name not in request.cookies:
            self.csrf_cookie.write(response, session[CSRF_KEY])
        if getattr(session, "from_store", False) or getattr(session, "stale_cookie", False):
            self.delete_entry(session)  # e.g. what a sign-out left: it needs no entry now
            self.delete_cookie(app, response)

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


class CheckedFileSystemCache(FileSystemCache):
    """cachelib's FileSystemCache, but a write that fails says so: cachelib only logs an
    OSError (disk full, folder read-only) and returns False, which would answer a sign-in
    with a session that does not exist."""

    def set(self, key: str, value: Any, timeout: Any = None, mgmt_element: bool = False) -> bool:
        if not super().set(key, value, timeout, mgmt_element):
            raise StoreWriteError("the session file could not be written (see cachelib's log)")
        return True


class FileSessionInterface(WebappSessionRules, CacheLibSessionInterface):
    """Sessions as files in instance/sessions (0700, files 0600), never pruned by cachelib."""

    def _retrieve_session_data(self, store_id: str) -> dict[str, Any] | None:
        try:
            data = self.cache.get(store_id)
        except Exception:  # cachelib lets UnicodeDecodeError, MemoryError... through
            logger.warning("damaged session entry ignored", exc_info=True)
            return None
        return self._as_session(data)

    def ping(self) -> None:
        folder = self.cache._path
        if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
            raise OSError(f"session folder {folder} is not readable and writable")
        self.cache.get(KEY_PREFIX + "healthz")


class RedisSessionInterface(WebappSessionRules, FlaskSessionRedisInterface):
    """Sessions in Redis, each key with its session's remaining life as TTL."""

    decoder = msgspec.msgpack.Decoder()

    def _retrieve_session_data(self, store_id: str) -> dict[str, Any] | None:
        raw = self.client.get(store_id)  # connection errors go on: the app answers 503
        if not raw:
            return None
        try:  # msgpack only: Flask-Session's decoder would fall back to pickle.loads
            return self._as_session(self.decoder.decode(raw))
        except msgspec.DecodeError:
            logger.warning("damaged session entry ignored")
            return None

    def ping(self) -> None:
        self.client.ping()


#: Seconds a Redis call may take before the request gives up (redis-py waits 5 s by default,
#: for ever in older versions).
REDIS_TIMEOUT = 2.0


def store_folder(app: Flask) -> str:
    return os.path.join(app.instance_path, "sessions")


def make_interface(app: Flask) -> WebappSessionRules:
    common = {"key_prefix": KEY_PREFIX, "permanent": False, "sid_length": SID_BYTES}
    if app.config["SESSION_BACKEND"] == "redis":
        client = Redis.from_url(
            app.config["REDIS_URL"],
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            health_check_interval=30,
        )
        return RedisSessionInterface(app, client=client, **common)
    folder = store_folder(app)
    ensure_private_folder(folder)
    cache = CheckedFileSystemCache(folder, threshold=0, mode=0o600)
    return FileSessionInterface(client=cache, **common)


def outage_response(response: Response) -> None:
    """Turn a response into a plain 503 (used where Flask's error handlers cannot run)."""
    response.status_code = 503
    response.headers.pop("Location", None)
    response.headers["Retry-After"] = "5"
    response.mimetype = "text/plain"
    response.set_data(OUTAGE_MESSAGE)


def refuse_during_outage() -> Response | None:
    """before_request: a request whose session could not be opened gets 503."""
    if getattr(session, "outage", False) and request.endpoint not in OUTAGE_EXEMPT:
        from .errors import unavailable_response

        return unavailable_response(OUTAGE_MESSAGE)
    return None


def init_app(app: Flask) -> None:
    interface = make_interface(app)
    interface.csrf_cookie = AnonymousCsrfCookie(app)
    app.session_interface = interface
    app.before_request(refuse_during_outage)


def session_interface(app: Flask) -> WebappSessionRules:
    interface = app.session_interface
    assert isinstance(interface, WebappSessionRules)
    return interface


def ping(app: Flask) -> None:
    """Raise if the store cannot be read (and, for files, written)."""
    session_interface(app).ping()


def current_session() -> ServerSideSession:
    """flask.session as the server-side session it is (Flask types it as the base mixin)."""
    current = session._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(current, ServerSideSession)
    return current
