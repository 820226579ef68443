"""Password policy and Argon2id hashing (argon2-cffi)."""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import cache
from importlib.resources import files
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app

MIN_LENGTH = 12
MAX_LENGTH = 128
#: How much nicer than request threads the hashing thread is (Linux nice levels are per thread).
HASHING_NICENESS = 10
#: Queue priorities of the hashing thread: checking a password someone is signing in with goes
#: before hashing a new one (sign-up, password change), so a burst of sign-ups cannot make
#: sign-ins wait behind it.
SIGN_IN, NEW_PASSWORD = 0, 1
#: A username at least this long must not be the bulk of the password either.
USERNAME_IN_PASSWORD_MIN = 4

Result = TypeVar("Result")


def _lower_priority() -> None:
    # A nice level, not SCHED_IDLE: measured, SCHED_IDLE starved sign-ins (5 s each) under a
    # poll flood, while nice 10 still leaves polls most of the CPU.
    with contextlib.suppress(OSError):  # not permitted: hashing then competes as an equal
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


class HashingThread:
    """One low-priority thread running Argon2 jobs, most urgent first, in order within a
    priority."""

    def __init__(self) -> None:
        self.jobs: queue.PriorityQueue[tuple[int, int, Future[Any], Callable[..., Any], tuple]]
        self.jobs = queue.PriorityQueue()
        self._order = itertools.count()
        threading.Thread(target=self._run, name="argon2", daemon=True).start()

    def submit(self, priority: int, work: Callable[..., Result], *args: object) -> Future[Result]:
        future: Future[Result] = Future()
        self.jobs.put((priority, next(self._order), future, work, args))
        return future

    def _run(self) -> None:
        _lower_priority()
        while True:
            _, _, future, work, args = self.jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work(*args))
                except BaseException as error:  # handed to the waiting request
                    future.set_exception(error)


_thread: tuple[int, HashingThread] | None = None
_thread_lock = threading.Lock()


def hashing_thread() -> HashingThread:
    """This process's hashing thread, started lazily (after gunicorn's fork)."""
    global _thread
    with _thread_lock:
        if _thread is None or _thread[0] != os.getpid():
            _thread = (os.getpid(), HashingThread())
        return _thread[1]


def on_hashing_thread(
    work: Callable[..., Result], *args: object, priority: int = SIGN_IN
) -> Result:
    """Run Argon2 on this process's one low-priority thread. Sign-ins are slow on purpose;
    this way they use the CPU that polls leave instead of starving them, and a flood of
    sign-ins (or sign-ups) queues instead of taking every core. (Argon2's own lane threads
    inherit the niceness.)"""
    return hashing_thread().submit(priority, work, *args).result()


@cache
def common_passwords() -> frozenset[str]:
    """The breached passwords refused (data/README.md says where they come from)."""
    text = files("webapp").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(text.splitlines())


def policy_error(password: str, username: str | None = None) -> str | None:
    """Why `password` is not acceptable, or None: a length rule, no composition rules, and
    not a known breached password nor the username (ASVS 2.1.1, 2.1.2, 2.1.7)."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters."
    folded = password.strip().lower()
    if folded in common_passwords():
        return "That password is one of the most common ones, found in breaches: choose another."
    if username and _built_on(folded, username.lower()):
        return "Password must not be your username, nor be made mostly of it."
    return None


def _built_on(password: str, username: str) -> bool:
    """Whether the password is the username, or what is left without it is too short."""
    if password == username:
        return True
    if len(username) < USERNAME_IN_PASSWORD_MIN:
        return False
    return username in password and len(password.replace(username, "")) < MIN_LENGTH


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
        """A hash of a new password: waits behind every sign-in's check."""
        return on_hashing_thread(self.hasher.hash, password, priority=NEW_PASSWORD)

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
            self._dummy_hash = on_hashing_thread(self.hasher.hash, "not a real password")
        self.verify(self._dummy_hash, password)


def init_app(app: Flask) -> None:
    app.extensions["webapp.passwords"] = Passwords(app)


def passwords() -> Passwords:
    hasher: Passwords = current_app.extensions["webapp.passwords"]
    return hasher
