"""Password policy and Argon2id hashing (argon2-cffi)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app

MIN_LENGTH = 12
MAX_LENGTH = 128


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
        return self.hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)

    def waste_time(self, password: str) -> None:
        """Do a verification's work for a username that does not exist."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash("not a real password, only for timing")
        self.verify(self._dummy_hash, password)


def init_app(app: Flask) -> None:
    app.extensions["webapp.passwords"] = Passwords(app)


def passwords() -> Passwords:
    hasher: Passwords = current_app.extensions["webapp.passwords"]
    return hasher
