"""Password policy and Argon2id hashing (argon2-cffi)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app

MIN_LENGTH = 12
MAX_LENGTH = 128
#: How much nicer than request threads the hashing thread is (Linux nice levels are per thread).
HASHING_NICENESS = 10

Result = TypeVar("Result")
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _lower_priority() -> None:
    # A nice level, not SCHED_IDLE: measured, SCHED_IDLE starved sign-ins (5 s each) under a
    # poll flood, while nice 10 still leaves polls most of the CPU.
    with contextlib.suppress(OSError):  # not permitted: hashing then competes as an equal
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def on_hashing_thread(work: Callable[..., Result], *args: object) -> Result:
    """Run Argon2 on this process's one low-priority thread. Sign-ins are slow on purpose;
    this way they use the CPU that polls leave instead of starving them, and a flood of
    sign-ins queues instead of taking every core. (Argon2's own lane threads inherit the
    niceness.)"""
    global _pool
    if _pool is None or _pool[0] != os.getpid():  # made lazily, after gunicorn's fork
        _pool = (
            os.getpid(),
            ThreadPoolExecutor(1, thread_name_prefix="argon2", initializer=_lower_priority),
        )
    return _pool[1].submit(work, *args).result()


def policy_error(password: str) -> str | None:
    """Why `password` is not acceptable, or None. Length only: no composition rules."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters."
    return None


class Passwords:
    """The app's hasher, plus a dummy hash so unknown usernames cost the same work."""

    def __init__(self, app: Flask) -> None:
        self.hasher = PasswordHasher(
            time_cost=app.config["ARGON2_TIME_COST"],
            memory_cost=app.config["ARGON2_MEMORY_COST"],
            parallelism=app.config["ARGON2_PARALLELISM"],
        )
        self._dummy_hash: str | None = None

    def hash(self, password: str) -> str:
        return on_hashing_thread(self.hasher.hash, password)

    def verify(self, password_hash: str, password: str) -> bool:
        return on_hashing_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)

    def waste_time(self, password: str) -> None:
        """Do a verification's work for a username that does not exist."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hash("not a real password, only for timing")
        self.verify(self._dummy_hash, password)


def init_app(app: Flask) -> None:
    app.extensions["webapp.passwords"] = Passwords(app)


def passwords() -> Passwords:
    hasher: Passwords = current_app.extensions["webapp.passwords"]
    return hasher
