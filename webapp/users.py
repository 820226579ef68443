"""Accounts: the rules for usernames, names and emails, and every change to a user."""

from __future__ import annotations

import re

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import RememberToken, User
from .passwords import passwords, policy_error
from .sessions.index import revoke_all

USERNAME_MAX = 64
USERNAME_PATTERN = re.compile(rf"[A-Za-z0-9._-]{{1,{USERNAME_MAX}}}")
EMAIL_PATTERN = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
NAME_MAX = 100
EMAIL_MAX = 254
ALREADY_YOUR_PASSWORD = "That is already your password: choose a new one."  # noqa: S105


class AccountError(ValueError):
    """A change to an account was refused; the message is fit to show the user."""


def username_error(username: str) -> str | None:
    if not USERNAME_PATTERN.fullmatch(username):
        return f"Username must be 1 to {USERNAME_MAX} letters, digits, '.', '_' or '-'."
    return None


def name_error(name: str) -> str | None:
    if not name.strip():
        return "Name must not be empty."
    if len(name) > NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"Name must be at most {NAME_MAX} printable characters."
    return None


def email_error(email: str) -> str | None:
    if len(email) > EMAIL_MAX or not EMAIL_PATTERN.fullmatch(email):
        return "Email must look like name@example.com."
    return None


def find_user(db: Session, username: str) -> User | None:
    """The user with this username, whatever its case."""
    return db.scalar(select(User).where(User.username_key == username.lower()))


def create_user(
    db: Session, username: str, password: str, name: str | None = None, email: str | None = None
) -> User:
    """Validate and store a new account; raise AccountError saying what is wrong."""
    name = username if name is None else name.strip()
    email = email.strip() if email else None
    error = (
        username_error(username)
        or name_error(name)
        or (email_error(email) if email else None)
        or policy_error(password, username)
    )
    if error:
        raise AccountError(error)
    if find_user(db, username) is not None:
        raise AccountError(f"The username {username!r} is taken.")
    user = User(
        username=username,
        username_key=username.lower(),
        name=name,
        email=email,
        password_hash=passwords().hash(password),
    )
    db.add(user)
    try:
        db.commit()
    except IntegrityError:  # another request took the name between the check and the insert
        db.rollback()
        raise AccountError(f"The username {username!r} is taken.") from None
    return user


def authenticate(db: Session, username: str, password: str) -> User | None:
    """The user if the password is right; equal work whether or not the username exists."""
    user = find_user(db, username) if USERNAME_PATTERN.fullmatch(username) else None
    hasher = passwords()
    if user is None:
        hasher.waste_time(password)
        return None
    if not hasher.verify(user.password_hash, password):
        return None
    if hasher.needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
        db.commit()
    return user


def set_password(db: Session, user: User, password: str) -> None:
    """Change the password and revoke every remember-me token of the user."""
    error = policy_error(password, user.username)
    if error:
        raise AccountError(error)
    user.password_hash = passwords().hash(password)
    db.execute(delete(RememberToken).where(RememberToken.user_id == user.id))
    db.commit()


def refuse_current_password(user: User, password: str) -> None:
    """Raise AccountError when `password` is already the user's (a check costs a hash)."""
    if passwords().verify(user.password_hash, password):
        raise AccountError(ALREADY_YOUR_PASSWORD)


def update_profile(db: Session, user: User, name: str, email: str | None) -> None:
    """Change the name and email shown for the user; raise AccountError saying what is wrong."""
    name, email = name.strip(), (email or "").strip() or None
    error = name_error(name) or (email_error(email) if email else None)
    if error:
        raise AccountError(error)
    user.name, user.email = name, email
    db.commit()


def delete_user(db: Session, user: User) -> None:
    """Delete the account, ending its sessions and remember-me tokens first."""
    revoke_all(user.id)
    db.execute(delete(RememberToken).where(RememberToken.user_id == user.id))
    db.delete(user)
    db.commit()
