"""Accounts: the rules for usernames, names and emails, and every change to a user."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import clock
from .models import RememberToken, User
from .passwords import passwords, policy_error
from .sessions.index import revoke_all

USERNAME_MAX = 64
USERNAME_PATTERN = re.compile(rf"[A-Za-z0-9._-]{{1,{USERNAME_MAX}}}")
EMAIL_PATTERN = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
NAME_MAX = 100
EMAIL_MAX = 254
EMAIL_TAKEN = "That email address belongs to another account."
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


def find_by_verified_email(db: Session, email: str) -> User | None:
    """The user whose verified address this is, whatever its case."""
    return db.scalar(select(User).where(User.email_key == email.strip().lower()))


def find_by_email(db: Session, email: str) -> list[User]:
    """The accounts an address reaches (password reset): its verified owner, else every
    account that gave it unverified."""
    owner = find_by_verified_email(db, email)
    if owner is not None:
        return [owner]
    query = select(User).where(func.lower(User.email) == email.strip().lower())
    return list(db.scalars(query.order_by(User.id).limit(5)))


def create_user(
    db: Session,
    username: str,
    password: str,
    name: str | None = None,
    email: str | None = None,
    *,
    email_verified: bool = False,
) -> User:
    """Validate and store a new account; raise AccountError saying what is wrong. An address
    an operator gives (`email_verified`) counts as verified; one given at sign-up waits for
    its owner to confirm it."""
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
    if email and email_verified and find_by_verified_email(db, email) is not None:
        raise AccountError(EMAIL_TAKEN)
    user = User(
        username=username,
        username_key=username.lower(),
        name=name,
        email=email,
        password_hash=passwords().hash(password),
    )
    if email and email_verified:
        user.email_key, user.email_verified_at = email.lower(), clock.utcnow()
    db.add(user)
    try:
        db.commit()
    except IntegrityError:  # another request took the name (or address) since the check
        db.rollback()
        raise AccountError(f"The username {username!r} or its email is taken.") from None
    return user


def find_login(db: Session, login: str) -> User | None:
    """The user a sign-in names: a username, or a verified email address."""
    if USERNAME_PATTERN.fullmatch(login):
        return find_user(db, login)
    if "@" in login and email_error(login) is None:
        return find_by_verified_email(db, login)
    return None


def authenticate(db: Session, username: str, password: str) -> User | None:
    """The user if the password is right; equal work whether or not the username (or
    verified email) exists."""
    user = find_login(db, username)
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


def update_profile(db: Session, user: User, name: str) -> None:
    """Change the name shown for the user; raise AccountError saying what is wrong. (A new
    email takes effect only once confirmed: set_email.)"""
    name = name.strip()
    error = name_error(name)
    if error:
        raise AccountError(error)
    user.name = name
    db.commit()


def set_email(db: Session, user: User, email: str | None, *, verified: bool) -> None:
    """Give the user this address (None: none), verified or not; raise AccountError when
    another account has verified it."""
    email = (email or "").strip() or None
    if email and (error := email_error(email)):
        raise AccountError(error)
    if email and verified:
        owner = find_by_verified_email(db, email)
        if owner is not None and owner.id != user.id:
            raise AccountError(EMAIL_TAKEN)
    user.email = email
    user.email_key = email.lower() if email and verified else None
    user.email_verified_at = clock.utcnow() if email and verified else None
    try:
        db.commit()
    except IntegrityError:  # verified by another account since the check
        db.rollback()
        raise AccountError(EMAIL_TAKEN) from None


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
