"""The database tables: users, their sessions index, remember-me tokens, sign-in history, the
second factors (authenticator app, recovery codes, passkeys) with their pending steps, the
mail links, requests and known devices of account recovery, and OpenID identities."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class User(UserMixin, Base):
    """An account. Ids are never reused, so a stale session can never load someone else."""

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy reads it)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    #: The username folded to lower case: usernames are unique regardless of case.
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: When an old copy of one of the user's remember-me tokens was presented (a stolen
    #: cookie): the user is told at their next sign-in, then it is cleared.
    remember_reused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The email folded to lower case, set only once the address is verified: verified
    #: addresses are unique regardless of case, and sign in like usernames.
    email_key: Mapped[str | None] = mapped_column(String(254), unique=True, index=True)
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def email_verified(self) -> bool:
        return self.email_key is not None

    def as_session_user(self) -> dict[str, str | None]:
        """The user as /session shows it (next-auth's session.user)."""
        return {
            "id": str(self.id),
            "username": self.username,
            "name": self.name,
            "email": self.email,
        }


class RememberToken(Base):
    """A "remember me" token: the cookie holds selector + secret, the table only a hash.

    Every use replaces the token with a new one of the same chain (`series`); the replaced one
    is kept, marked `replaced_at`, so that an old copy presented later is recognised as theft.
    The sessions a chain signed in name it (`UserSession.remember_series`).
    """

    __tablename__ = "remember_tokens"

    selector: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The chain: the selector of its first token, shared by every token that replaced it.
    series: Mapped[str] = mapped_column(String(32), index=True)
    #: When a newer token of the chain replaced this one; None for the chain's current token.
    replaced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserSession(Base):
    """One live session of a user, for listing and revoking. Holds only a hash of the session
    id (the store keys entries by that same hash), so a leaked table cannot sign anyone in."""

    __tablename__ = "user_sessions"

    #: Public reference shown on /account/sessions and by the CLI; not the session id.
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Indexed so that pruning finds expired sessions in time proportional to how many there are.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_active_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    #: The remember-me chain that signed this session in, or was issued with it: ending the
    #: session ends the chain, so the device cannot sign itself back in.
    remember_series: Mapped[str | None] = mapped_column(String(32), index=True)
    #: How the session began: "password", "password+totp", "passkey", "recovery_code", ...
    method: Mapped[str] = mapped_column(String(32), server_default="password")
    #: The OpenID provider that signed this session in, and its session id (`sid` claim): a
    #: back-channel logout token names one or the other's user (webapp/signin/oidc_views.py).
    oidc_provider: Mapped[str | None] = mapped_column(String(32), index=True)
    oidc_sid: Mapped[str | None] = mapped_column(String(255), index=True)


class SignInEvent(Base):
    """A sign-in attempt: the user's history, and what throttling counts."""

    __tablename__ = "sign_in_events"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy reads it)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    #: The username as typed, folded: failures count for names that do not exist too.
    username_key: Mapped[str] = mapped_column(String(64), index=True)
    ip: Mapped[str | None] = mapped_column(String(45), index=True)
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    #: "success", "failure" or "locked".
    outcome: Mapped[str] = mapped_column(String(16))
    #: "password", "remember", "reauthenticate", "signup", "password+totp", "passkey",
    #: "recovery_code" or "oidc:<provider>" (provider names are at most 11 characters).
    method: Mapped[str] = mapped_column(String(16))


class TotpAuthenticator(Base):
    """A user's authenticator app (RFC 6238): its shared secret, and the last time step a code
    was accepted for, so that no code is accepted twice."""

    __tablename__ = "totp_authenticators"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """A single-use recovery code, salted and hashed (the user saw it once)."""

    __tablename__ = "recovery_codes"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy reads it)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: "salt$sha256(salt + code)", both hex.
    code_hash: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Passkey(Base):
    """A WebAuthn credential (discoverable, user-verifying) registered by a user."""

    __tablename__ = "passkeys"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy reads it)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The credential id, base64url.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SignInChallenge(Base):
    """A short-lived, single-use step of a sign-in kept on the server: a WebAuthn challenge, or
    a correct password waiting for its second factor. Bound to the browser that asked for it
    (`key` hashes its CSRF token with the purpose); deleted when used."""

    __tablename__ = "sign_in_challenges"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    challenge: Mapped[bytes | None] = mapped_column(LargeBinary)
    remember_me: Mapped[bool] = mapped_column(Boolean, default=False)
    next_url: Mapped[str | None] = mapped_column(String(2048))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OidcIdentity(Base):
    """An account at an OpenID provider (its `sub`) that signs a user in here."""

    __tablename__ = "oidc_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OidcLogoutToken(Base):
    """A back-channel logout token already used (`jti`), kept while it could be replayed."""

    __tablename__ = "oidc_logout_tokens"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class MailToken(Base):
    """A single-use link sent by mail (password reset, email verification, "was this you?").
    The link holds a random token; the table only its SHA-256."""

    __tablename__ = "mail_tokens"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy reads it)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: "reset", "verify" or "notice".
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: verify: the address being confirmed.
    email: Mapped[str | None] = mapped_column(String(254))
    #: reset: a digest of the password hash it was issued against (a new password kills it);
    #: notice: the reference of the session it ends.
    bound_to: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MailRequest(Base):
    """A request that sends mail to an address a stranger typed (a password reset): what the
    per-address and per-client limits count. The address is kept only as a digest."""

    __tablename__ = "mail_requests"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy reads it)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    address_hash: Mapped[str] = mapped_column(String(64), index=True)
    ip: Mapped[str | None] = mapped_column(String(45), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class KnownDevice(Base):
    """A browser and system a user has signed in from: a sign-in from any other is "new"."""

    __tablename__ = "known_devices"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    #: SHA-256 of the browser family and the operating system family.
    device_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
