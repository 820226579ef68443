"""The configured session store, installed as Flask's session interface."""

from __future__ import annotations

from flask import Flask

from ..errors import refuse_during_outage
from . import files, redis_store
from .csrf_cookie import AnonymousCsrfCookie
from .store import KEY_PREFIX, SID_BYTES, WebappSessionRules

BACKENDS = {"filesystem": files.make_interface, "redis": redis_store.make_interface}


def make_interface(app: Flask) -> WebappSessionRules:
    make = BACKENDS[app.config["SESSION_BACKEND"]]
    return make(app, key_prefix=KEY_PREFIX, permanent=False, sid_length=SID_BYTES)


def init_app(app: Flask) -> None:
    interface = make_interface(app)
    interface.csrf_cookie = AnonymousCsrfCookie(app)
    app.session_interface = interface
    app.before_request(refuse_during_outage)
