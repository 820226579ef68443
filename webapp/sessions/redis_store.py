"""Sessions in Redis, for several hosts: each key sealed (store.SealedEntries, as the file
store's entries are) with its session's remaining life as TTL.

Flask-Session's Redis interface stores plain msgpack and decodes with a pickle fallback: whoever
could write to Redis could plant a session under an id of their choosing, or make the app
unpickle. Here every write is sealed and every read checked before anything is decoded.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask_session.redis import RedisSessionInterface as FlaskSessionRedisInterface
from redis import Redis

from .store import DamagedEntry, SealedEntries, WebappSessionRules

logger = logging.getLogger(__name__)

#: Seconds a Redis call may take before the request gives up (redis-py waits 5 s by default,
#: for ever in older versions).
REDIS_TIMEOUT = 2.0


class RedisSessionInterface(WebappSessionRules, FlaskSessionRedisInterface):
    """Sessions in Redis, each key sealed, with its session's remaining life as TTL."""

    def __init__(self, app: Flask, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.sealer = SealedEntries(app.config["SECRET_KEY"])

    def _write_entry(self, store_id: str, data: dict[str, Any], seconds: int) -> None:
        self.client.set(store_id, self.sealer.seal(store_id, data), ex=seconds)

    def _retrieve_session_data(self, store_id: str) -> dict[str, Any] | None:
        """The stored session, or None; an entry that fails its check is no session: logged
        (its key, a hash of the id; never its content) and deleted. The poll fast path reads
        here too. Connection errors go on: the app answers 503."""
        raw = self.client.get(store_id)
        if not raw:
            return None
        try:
            data = self.sealer.opened(store_id, raw)
        except DamagedEntry as damage:
            logger.warning("session entry %s ignored and deleted: %s", store_id, damage)
            self.client.delete(store_id)
            return None
        return self._as_session(data)

    def ping(self) -> None:
        self.client.ping()


def make_interface(app: Flask, **common: Any) -> RedisSessionInterface:
    client = Redis.from_url(
        app.config["REDIS_URL"],
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        health_check_interval=30,
    )
    return RedisSessionInterface(app, client=client, **common)
