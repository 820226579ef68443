"""The session store's rules for any Flask-Session backend, and the sealed entry format.

Two backends (files.py, the embedded default; redis_store.py, for several hosts) share these
rules: read-only requests never write, entries are keyed by a hash of the session id (sid_hash:
the one place it is computed), every entry is sealed (SealedEntries) and one that fails its
check is no session, anonymous sessions stay out of the store, no entry is ever unpickled, and
an entry lives at least until the end its session advertises. backend.py picks and installs
the configured one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import msgspec
from flask import Flask, Request, Response, g, request, session
from flask_session.base import ServerSideSession, ServerSideSessionInterface

from ..errors import SAVE_FAILED_MESSAGE, STORE_OUTAGES, StoreWriteError, outage_response
from .csrf_cookie import AnonymousCsrfCookie

logger = logging.getLogger(__name__)

KEY_PREFIX = "session:"
SID_BYTES = 32
CSRF_KEY = "csrf_token"  # Flask-WTF's session key
#: What an anonymous visitor's session may hold and still live in a cookie, not the store.
#: Anything more (a basket) makes an anonymous entry, with its own short TTL (`lifetime`).
ANONYMOUS_KEYS = frozenset({CSRF_KEY, "_permanent"})
#: What a rotated-away id's entry holds for MOVED_SECONDS: requests already on their way with
#: the old id (a poll, a script's fetch) get no session, and their answers neither delete nor
#: replace the cookie, which the browser by then holds with the new id (either would sign it
#: out).
MOVED_KEY = "_moved"
MOVED_SECONDS = 30


def sid_hash(sid: str) -> str:
    """SHA-256 of a session id: the store's key for its entry and the index's reference to it,
    so that a listing of either gives no usable session id."""
    return hashlib.sha256(sid.encode()).hexdigest()


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
        """Every write of every backend: a sealed entry whose TTL is rounded up to whole
        seconds (Flask-Session's rounds down), so that the entry outlives the `expires` that
        /session advertises."""
        if self.lifetime is not None:
            session_lifetime = self.lifetime(session)
        seconds = max(1, math.ceil(session_lifetime.total_seconds()))
        self._write_entry(store_id, dict(session), seconds)

    def get_expiration_time(self, app: Flask, session: Any) -> datetime | None:
        """An anonymous entry's cookie lives as long as the entry (its own TTL, longer than
        the idle timeout); a signed-in session's cookie as Flask-Session decides."""
        if self.lifetime is not None and "_user_id" not in session:
            return datetime.now(UTC) + self.lifetime(session)
        return super().get_expiration_time(app, session)

    def _write_entry(self, store_id: str, data: dict[str, Any], seconds: int) -> None:
        """Store `data` sealed under `store_id` for at least `seconds`."""
        raise NotImplementedError

    def _get_store_id(self, sid: str) -> str:
        """Entries are keyed by SHA-256 of the session id, as the session index is: a listing
        of the store or of the index gives no usable session id."""
        return self.key_prefix + sid_hash(sid)

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
        moved = bool(session.get(MOVED_KEY))
        if moved:  # an id just rotated away: no session, and the cookie is left alone
            session = self.session_class(
                sid=self._generate_sid(self.sid_length), permanent=self.permanent
            )
            cookie = None
        session.moved = moved
        # Flask-Session never adopts an unknown id: it makes a new one, so a differing id
        # means the cookie named no live session (expired, ended, or made up).
        session.stale_cookie = bool(cookie) and cookie != session.sid
        if session.stale_cookie:
            logger.info("session cookie names no live session; treated as signed out")
        session.from_store = bool(cookie) and cookie == session.sid
        if not session.from_store and (token := self.csrf_cookie.read(request)):
            dict.__setitem__(session, CSRF_KEY, token)  # as if stored: not a modification
        return session

    def regenerate(self, session: ServerSideSession) -> None:
        """A new id for the session; a stored old id is left MOVED_SECONDS as a marker."""
        old_store_id = self._get_store_id(session.sid)
        stored = bool(session) and getattr(session, "from_store", False)
        super().regenerate(session)
        if stored:
            self._write_entry(old_store_id, {MOVED_KEY: True}, MOVED_SECONDS)

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
        if getattr(session, "moved", False) and "_user_id" not in session:
            # Anything an old-id request would store (a passkey challenge, a basket line)
            # would come with a new cookie replacing the browser's signed-in one: drop it.
            return
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
    """Every backend's entry format: msgpack under an HMAC-SHA256 of the store key and the
    payload, with a key derived from the secret key (and cachelib's serializer for files).

    cachelib's default serializer unpickles whatever is in the folder, Flask-Session's Redis
    decoder falls back to pickle, and an unsealed entry would let whoever can write to the
    store plant a session under an id of their choosing. Here nothing is decoded before its
    MAC is checked, so an entry written by another program, with another secret key, copied
    from another session's key, or pickled by an earlier webapp is DamagedEntry, never code
    and never a session. The MAC does not cover the file store's expiry header or Redis's TTL:
    session_policy enforces the real timeouts from timestamps inside the entry.
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

    def opened(self, store_key: str, sealed: bytes) -> Any:
        """The value sealed under `store_key`; DamagedEntry when it is anything else."""
        if len(sealed) > MAX_ENTRY_BYTES:
            raise DamagedEntry(f"larger than {MAX_ENTRY_BYTES} bytes")
        return self.decode(self.verified(store_key, sealed))

    # cachelib's serializer interface: FileSystemCache.set writes the header, then dump().
    def dump(self, value: Any, f: IO[bytes]) -> None:
        if not isinstance(value, Sealed):
            raise TypeError("the session store writes only sealed entries")
        f.write(value)

    def load(self, f: IO[bytes]) -> Any:
        """Never used (CheckedFileSystemCache.get reads with the key): refuse, never unpickle."""
        raise DamagedEntry("read without its store key")


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
