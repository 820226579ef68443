"""Server-side session storage: Flask-Session's interfaces with webapp's rules on top.

Two stores: files (Flask-Session's cachelib interface on a private FileSystemCache, the
embedded default) and Redis (several hosts). Both are made explicitly, not by Flask-Session's
defaults: cachelib's default threshold of 500 deletes live sessions once 500 files exist
(threshold=0 never prunes), cachelib's files and Flask-Session's Redis decoder fall back to
pickle. Neither store ever unpickles: files hold MAC-checked msgpack, Redis plain msgpack.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import struct
import tempfile
from collections.abc import Callable
from datetime import timedelta
from time import time
from typing import IO, Any

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

from .instance import ensure_private_store

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
SAVE_FAILED_MESSAGE = "The server could not store your session (its storage failed); try again."
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
        if response.status_code >= 500:
            # A failed request (an outage answers 503) leaves the browser as it was: nothing
            # stored and no cookie set, however far the view got (signed in and indexed the
            # session, issued a remember-me token, dropped the anonymous CSRF cookie).
            del response.headers["Set-Cookie"]
            return
        try:
            self._save(app, session, response)
        except STORE_OUTAGES as error:
            # The answer promised a session that was not stored: say so instead.
            logger.error("session store unavailable while saving: %s", error)
            outage_response(
                response, SAVE_FAILED_MESSAGE if isinstance(error, StoreWriteError) else None
            )

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
        guard = self.write_guard if session.modified else None
        if guard is not None and not guard(session):
            logger.info("not storing a session that was ended while this request ran")
            self.delete_entry(session)
            return
        super().save_session(app, session, response)
        if guard is not None and not guard(session):
            # Ended between the check and the write: take the write back (the ending deletes
            # the entry before it commits, and again after: see session_index.revoke).
            logger.info("took back the write of a session ended while it was being stored")
            self.delete_entry(session)

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


class DamagedEntry(Exception):
    """A store file that is not an entry webapp wrote under its name; the message says why."""


#: cachelib's expiry header (4 bytes, native order; pruning.py reads it), then the MAC.
HEADER_BYTES = 4
MAC_BYTES = hashlib.sha256().digest_size
#: A session is a few hundred bytes: anything larger than this is not one (and is not read).
MAX_ENTRY_BYTES = 1 << 20


class Sealed(bytes):
    """An entry's bytes after the header, MAC first, sealed for one store key."""


class SealedEntries:
    """The file store's serializer: msgpack under an HMAC-SHA256 of the store key and the
    payload, with a key derived from the secret key.

    cachelib's default serializer unpickles whatever is in the folder. Here nothing is
    decoded before its MAC is checked, so a file written by another program, with another
    secret key, copied from another session's name, or pickled by an earlier webapp is
    DamagedEntry, never code. The MAC does not cover the expiry header: session_policy
    enforces the real timeouts from timestamps inside the entry.
    """

    PURPOSE = b"webapp-session-store"

    def __init__(self, secret: str | bytes) -> None:
        secret = secret.encode() if isinstance(secret, str) else secret
        self.key = hmac.new(secret, self.PURPOSE, hashlib.sha256).digest()
        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder()

    def mac(self, store_key: str, payload: bytes) -> bytes:
        name = store_key.encode()
        digest = hmac.new(self.key, struct.pack(">I", len(name)) + name, hashlib.sha256)
        digest.update(payload)
        return digest.digest()

    def seal(self, store_key: str, value: Any) -> Sealed:
        payload = self.encoder.encode(value)
        return Sealed(self.mac(store_key, payload) + payload)

    def verified(self, store_key: str, sealed: bytes) -> bytes:
        """The payload, once its MAC is checked; DamagedEntry otherwise."""
        if len(sealed) < MAC_BYTES:
            raise DamagedEntry("too short to hold its MAC")
        mac, payload = sealed[:MAC_BYTES], sealed[MAC_BYTES:]
        if not hmac.compare_digest(mac, self.mac(store_key, payload)):
            raise DamagedEntry(
                "its MAC does not match: written by another program or with another secret "
                "key, copied from another session, or pickled by an earlier webapp"
            )
        return payload

    def decode(self, payload: bytes) -> Any:
        try:
            return self.decoder.decode(payload)
        except msgspec.DecodeError:
            raise DamagedEntry("MAC matches but the payload is not msgpack") from None

    # cachelib's serializer interface: FileSystemCache.set writes the header, then dump().
    def dump(self, value: Any, f: IO[bytes]) -> None:
        if not isinstance(value, Sealed):
            raise TypeError("the session store writes only sealed entries")
        f.write(value)

    def load(self, f: IO[bytes]) -> Any:
        """Never used (CheckedFileSystemCache.get reads with the key): refuse, never unpickle."""
        raise DamagedEntry("read without its store key")


class CheckedFileSystemCache(FileSystemCache):
    """cachelib's FileSystemCache with sealed entries (SealedEntries: never pickle), and a
    write that fails says so: cachelib only logs an OSError (disk full, folder read-only) and
    returns False, which would answer a sign-in with a session that does not exist."""

    def __init__(self, cache_dir: str, secret: str | bytes, **kwargs: Any) -> None:
        super().__init__(cache_dir, **kwargs)
        self.sealer = SealedEntries(secret)
        # cachelib's own paths (set, and any other) go through it too: none can pickle.
        self.serializer = self.sealer  # type: ignore[assignment]

    def set(self, key: str, value: Any, timeout: Any = None, mgmt_element: bool = False) -> bool:
        """cachelib's write (a temporary file renamed over the entry: never half-written), but
        one that fails raises and leaves no temporary file behind (cachelib's leaves it on a
        full disk). No pruning or file count: threshold is 0."""
        sealed = self.sealer.seal(key, value)
        header = struct.pack("I", 0 if mgmt_element else self._normalize_timeout(timeout))
        try:
            fd, temporary = tempfile.mkstemp(suffix=self._fs_transaction_suffix, dir=self._path)
        except OSError as error:
            raise StoreWriteError(f"the session file could not be written: {error}") from error
        try:
            with os.fdopen(fd, "wb") as file:  # mkstemp made it 0600
                file.write(header + sealed)
            os.replace(temporary, self._get_filename(key))
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise StoreWriteError(f"the session file could not be written: {error}") from error
        return True

    def get(self, key: str) -> Any:
        """The entry under `key`; None when there is none or its header says it has expired
        (as cachelib decides); DamagedEntry when the file is not an entry webapp wrote
        under this key, expired or not. Other OSErrors go on."""
        try:
            with open(self._get_filename(key), "rb", buffering=0) as file:
                if os.fstat(file.fileno()).st_size > MAX_ENTRY_BYTES:
                    raise DamagedEntry(f"larger than {MAX_ENTRY_BYTES} bytes")
                data = file.read()
        except FileNotFoundError:
            return None
        if len(data) < HEADER_BYTES:
            raise DamagedEntry("shorter than its expiry header")
        payload = self.sealer.verified(key, data[HEADER_BYTES:])
        (expires,) = struct.unpack_from("I", data)
        if expires != 0 and expires < time():
            return None
        return self.sealer.decode(payload)

    def entry_name(self, key: str) -> str:
        """The file name of `key`'s entry (a hash of it: safe to log)."""
        return os.path.basename(self._get_filename(key))


class FileSessionInterface(WebappSessionRules, CacheLibSessionInterface):
    """Sessions as sealed files in instance/sessions (0700, files 0600, checked at start),
    never pruned by cachelib."""

    cache: CheckedFileSystemCache

    def _delete_session(self, store_id: str) -> None:
        """A delete that fails (read-only folder) says so: cachelib only logs it and returns
        False, and a sign-out or revocation would answer "done" while any copy of the cookie
        still works."""
        if not self.cache.delete(store_id):
            raise StoreWriteError("the session file could not be deleted (see cachelib's log)")

    def _retrieve_session_data(self, store_id: str) -> dict[str, Any] | None:
        """The stored session, or None; a damaged or foreign entry is no session: logged
        (its file name, never its content) and deleted. The poll fast path reads here too."""
        try:
            data = self.cache.get(store_id)
        except DamagedEntry as damage:
            name = self.cache.entry_name(store_id)
            logger.warning("session file %s ignored and deleted: %s", name, damage)
            self.cache.delete(store_id)
            return None
        except Exception:  # an unreadable file (EIO, EACCES...): no session, as in cachelib
            logger.warning("session entry could not be read; treated as no session", exc_info=True)
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
    ensure_private_store(folder)
    cache = CheckedFileSystemCache(folder, app.config["SECRET_KEY"], threshold=0, mode=0o600)
    return FileSessionInterface(client=cache, **common)


def outage_response(response: Response, message: str | None = None) -> None:
    """Turn a response into the 503 page or JSON error (used after the view has answered,
    where Flask's error handlers cannot run); nothing of the original answer survives."""
    from .errors import unavailable_response

    answer = unavailable_response(message or OUTAGE_MESSAGE)
    response.status_code = 503
    response.headers.pop("Location", None)
    del response.headers["Set-Cookie"]  # e.g. no remember-me cookie for a sign-in that failed
    response.headers["Retry-After"] = answer.headers["Retry-After"]
    response.headers["Content-Type"] = answer.headers["Content-Type"]
    response.set_data(answer.get_data())


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
