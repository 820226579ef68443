"""The embedded session store: sealed files in instance/sessions (cachelib's FileSystemCache
layout, with webapp's own reads and writes).

cachelib's default threshold of 500 deletes live sessions once 500 files exist, and its
serializer unpickles whatever is in the folder: here threshold is 0 (pruning.py deletes
expired files) and every entry is sealed (store.SealedEntries), so nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
import tempfile
from time import time
from typing import Any

from cachelib.base import BaseCache
from cachelib.file import FileSystemCache
from flask import Flask
from flask_session.cachelib import CacheLibSessionInterface

from ..errors import StoreWriteError
from ..instance import ensure_private_store
from .store import (
    HEADER_BYTES,
    KEY_PREFIX,
    MAX_ENTRY_BYTES,
    DamagedEntry,
    SealedEntries,
    WebappSessionRules,
)

logger = logging.getLogger(__name__)


def store_folder(app: Flask) -> str:
    return os.path.join(app.instance_path, "sessions")


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

    def _normalize_timeout(self, timeout: Any) -> int:
        """The expiry header: cachelib's counts from int(time()), which can end an entry up
        to a second before its session's advertised end; this counts from the next second."""
        seconds = BaseCache._normalize_timeout(self, timeout)
        return 0 if seconds == 0 else math.ceil(time()) + seconds

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

    def _write_entry(self, store_id: str, data: dict[str, Any], seconds: int) -> None:
        self.cache.set(store_id, data, timeout=seconds)  # sealed by the cache's set()

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


def make_interface(app: Flask, **common: Any) -> FileSessionInterface:
    folder = store_folder(app)
    ensure_private_store(folder)
    cache = CheckedFileSystemCache(folder, app.config["SECRET_KEY"], threshold=0, mode=0o600)
    return FileSessionInterface(client=cache, **common)
