"""The password rules (ASVS 2.1.7: no breached passwords, not the username) and the hashing
thread's order (sign-in checks before new-password hashes: issue 12, hole 8)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from argon2 import PasswordHasher
from helpers import FAST_ARGON2

from webapp import passwords
from webapp.passwords import NEW_PASSWORD, SIGN_IN, Passwords, hashing_thread, policy_error

COMMON = "That password is one of the most common ones"
USERNAME = "Password must not be your username"


def test_v2_1_7_the_breached_password_list_ships_with_the_package():
    common = passwords.common_passwords()
    assert len(common) == 351
    assert all(passwords.MIN_LENGTH <= len(p) <= passwords.MAX_LENGTH for p in common)
    assert all(p == p.lower() for p in common)


@pytest.mark.parametrize(
    "password", ["1q2w3e4r5t6y", "QWERTY123456", "Password1234", " 123456789123 ", "qazwsxedcrfv"]
)
def test_v2_1_7_common_breached_passwords_are_refused_whatever_their_case(password):
    assert policy_error(password).startswith(COMMON)


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("Wonderland-Alice", "wonderland-alice"),  # the username itself, in any case
        ("carolcarol12", "carol"),  # the username with a few characters added
        ("12-Carol-Carol-34", "carol"),
    ],
)
def test_v2_1_7_passwords_built_on_the_username_are_refused(password, username):
    assert policy_error(password, username).startswith(USERNAME)


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("carol walks the long way home", "carol"),  # enough besides the username
        ("abcdefghijklmn", "a"),  # a short username is not looked for inside
        ("correct horse battery", None),
    ],
)
def test_v2_1_7_other_passwords_are_accepted(password, username):
    assert policy_error(password, username) is None


def test_hole8_a_sign_in_check_goes_before_queued_sign_up_hashes():
    """A burst of sign-ups (each a new-password hash) must not make a sign-in wait behind it:
    with the hashing thread busy and three sign-up hashes queued, a sign-in's check queued
    last runs first."""
    order: list[str] = []

    class Recording(PasswordHasher):
        def hash(self, password, *, salt=None):
            order.append("sign-up")
            return super().hash(password, salt=salt)

        def verify(self, hash, password):
            order.append("sign-in")
            return super().verify(hash, password)

    hasher = Passwords(SimpleNamespace(config=FAST_ARGON2))  # type: ignore[arg-type]
    stored = hasher.hasher.hash("correct horse battery")
    hasher.hasher = Recording(time_cost=1, memory_cost=8, parallelism=1)
    release = threading.Event()
    thread = hashing_thread()
    busy = thread.submit(SIGN_IN, release.wait, 10)
    signing_up = [threading.Thread(target=hasher.hash, args=(f"new one {i}",)) for i in range(3)]
    for worker in signing_up:
        worker.start()
    wait_until(lambda: thread.jobs.qsize() == 3)
    result: list[bool] = []
    signing_in = threading.Thread(
        target=lambda: result.append(hasher.verify(stored, "correct horse battery"))
    )
    signing_in.start()
    wait_until(lambda: thread.jobs.qsize() == 4)
    release.set()
    for worker in [*signing_up, signing_in]:
        worker.join(10)
    assert busy.result() is True and result == [True]
    assert order == ["sign-in", "sign-up", "sign-up", "sign-up"]
    assert (SIGN_IN, NEW_PASSWORD) == (0, 1)


def wait_until(condition, seconds: float = 10) -> None:
    done = threading.Event()
    for _ in range(int(seconds * 100)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition never held")
