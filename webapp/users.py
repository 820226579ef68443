"""Accounts: the rules for usernames, names and emails, and every change to a user."""

from __future__ import annotations

import re
import secrets
from typing import Any

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
#: Starts the password_hash of an account without a password (made through an OpenID
#: provider): no hash starts with it, so no password ever matches.
UNUSABLE_PASSWORD = "!"  # noqa: S105 (a marker, not a password)


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
    if user is None or not has_usable_password(user):
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


def has_usable_password(user: User) -> bool:
    return not user.password_hash.startswith(UNUSABLE_PASSWORD)


def _username_base(claims: dict[str, Any]) -> str:
    """The first of preferred_username, the email's local part and the name that leaves
    something once reduced to the characters usernames allow; else "user"."""
    email = claims.get("email")
    candidates = (
        claims.get("preferred_username"),
        email.split("@")[0] if isinstance(email, str) else None,
        claims.get("name"),
    )
    for candidate in candidates:
        if isinstance(candidate, str):
            base = re.sub(r"[^A-Za-z0-9._-]+", "", candidate.strip().replace(" ", ".")).strip(".-")
            if base:
                return base[: USERNAME_MAX - 8]
    return "user"


def _free_username(db: Session, base: str) -> str:
    """`base`, or `base-2`, `base-3`... whichever no account has yet."""
    for number in range(1, 100):
        username = base if number == 1 else f"{base}-{number}"
        if find_user(db, username) is None:
            return username
    return f"{base}-{secrets.token_hex(3)}"


def create_user_from_claims(db: Session, claims: dict[str, Any]) -> User:
    """A new account for someone an OpenID provider signed in: a unique username derived from
    the claims, their name, the email only when the provider says it verified it, and no
    password. Never an existing account, whatever the email: linking is the user's act."""
    base = _username_base(claims)
    raw_name, raw_email = claims.get("name"), claims.get("email")
    name = "".join(c for c in raw_name if c.isprintable()) if isinstance(raw_name, str) else ""
    name = name.strip()
    email = raw_email.strip() if isinstance(raw_email, str) else None
    if claims.get("email_verified") is not True or email is None or email_error(email):
        email = None
    for _ in range(3):  # another request may take the same name between the check and insert
        username = _free_username(db, base)
        user = User(
            username=username,
            username_key=username.lower(),
            name=name[:NAME_MAX] or username,
            email=email,
            password_hash=UNUSABLE_PASSWORD + secrets.token_hex(16),
        )
        db.add(user)
        try:
            db.commit()
            return user
        except IntegrityError:
            db.rollback()
    raise AccountError("Could not choose a username: try again.")
