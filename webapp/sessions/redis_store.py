"""Sessions in Redis, for several hosts: each key with its session's remaining life as TTL."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from flask import Flask
from flask_session.redis import RedisSessionInterface as FlaskSessionRedisInterface
from redis import Redis

from .store import WebappSessionRules

logger = logging.getLogger(__name__)

#: Seconds a Redis call may take before the request gives up (redis-py waits 5 s by default,
#: for ever in older versions).
REDIS_TIMEOUT = 2.0


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


def make_interface(app: Flask, **common: Any) -> RedisSessionInterface:
    client = Redis.from_url(
        app.config["REDIS_URL"],
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        health_check_interval=30,
    )
    return RedisSessionInterface(app, client=client, **common)
