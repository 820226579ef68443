"""Command line: `flask --app webapp users | sessions | db | mail ...`."""

from __future__ import annotations

import os
import smtplib
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from alembic import command
from alembic.util.exc import CommandError
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from . import events, mail, notices, passwords, schema, users
from .db import engine_of, get_db
from .models import User, UserSession
from .sessions import index as session_index
from .sessions import policy as session_policy
from .sessions import pruning
from .signin import totp

users_cli = AppGroup("users", help="Create, list, delete users and set their passwords.")

#: Longest line read as a password: the policy's maximum in 4-byte UTF-8 characters.
PASSWORD_LINE_BYTES = 4 * passwords.MAX_LENGTH


class Text(click.ParamType):
    """A command-line value that is valid UTF-8, has no control characters and is not too
    long; anything else is refused (exit status 2) before it reaches the database, where an
    undecodable byte would be a traceback."""

    name = "text"

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # the shell passed bytes that are not UTF-8
            self.fail("is not valid UTF-8", param, ctx)
        if len(text) > self.max_length:
            self.fail(f"must be at most {self.max_length} characters", param, ctx)
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            self.fail("must not contain control characters", param, ctx)
        return text


USERNAME = Text(users.USERNAME_MAX)
NAME = Text(users.NAME_MAX)
EMAIL = Text(users.EMAIL_MAX)
SESSION_REF = Text(16)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn refusals and database failures into a message on stderr and exit status 1."""
    try:
        yield
    except users.AccountError as error:
        raise click.ClickException(str(error)) from None
    except SQLAlchemyError as error:
        raise click.ClickException(
            f"database unreachable or failing: {error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}"
        ) from None


def read_password(from_stdin: bool) -> str:
    """One line from standard input, or a hidden prompt asked twice."""
    if from_stdin:
        line = sys.stdin.buffer.readline(PASSWORD_LINE_BYTES + 3)
        raw = line.removesuffix(b"\n").removesuffix(b"\r")
        if not raw:
            raise click.ClickException("no password on standard input")
        if len(raw) > PASSWORD_LINE_BYTES:
            raise click.ClickException(
                f"Password must be at most {passwords.MAX_LENGTH} characters."
            )
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise click.ClickException(
                "the password on standard input is not valid UTF-8"
            ) from None
    password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise click.ClickException("the password typed is not valid UTF-8") from None
    return password


def existing_user(username: str) -> User:
    user = users.find_user(get_db(), username)
    if user is None:
        raise click.ClickException(f"no such user: {username!r}")
    return user


password_stdin_option = click.option(
    "--password-stdin", is_flag=True, help="Read the password as one line from standard input."
)


@users_cli.command("create")
@click.argument("username", type=USERNAME)
@click.option("--name", type=NAME, help="Display name (default: the username).")
@click.option("--email", type=EMAIL, help="Email address.")
@password_stdin_option
def create_user(username: str, name: str | None, email: str | None, password_stdin: bool) -> None:
    """Create a user."""
    with clear_errors():
        error = users.username_error(username)
        if error:
            raise users.AccountError(error)
        if users.find_user(get_db(), username) is not None:
            raise users.AccountError(f"The username {username!r} is taken.")
        password = read_password(password_stdin)
        # An address an operator gives is taken as verified.
        user = users.create_user(get_db(), username, password, name, email, email_verified=True)
    click.echo(f"Created user {user.username!r}.")


@users_cli.command("list")
@click.option("--verified", "only", flag_value="verified", help="Only verified emails.")
@click.option("--unverified", "only", flag_value="unverified", help="Only unverified emails.")
def list_users(only: str | None) -> None:
    """List users (VERIFIED: whether the email was confirmed)."""
    query = select(User).order_by(User.username_key)
    if only == "verified":
        query = query.where(User.email_key.is_not(None))
    elif only == "unverified":
        query = query.where(User.email.is_not(None), User.email_key.is_(None))
    with clear_errors():
        rows = get_db().scalars(query).all()
    if not rows:
        click.echo("No users yet." if only is None else f"No users with an {only} email.")
        return
    click.echo(f"{'USERNAME':<24} {'NAME':<24} {'EMAIL':<32} {'VERIFIED':<8} CREATED")
    for user in rows:
        created = user.created_at.strftime("%Y-%m-%d %H:%M")
        verified = "-" if user.email is None else "yes" if user.email_verified else "no"
        click.echo(
            f"{user.username:<24} {user.name:<24} {user.email or '-':<32} {verified:<8} {created}"
        )


@users_cli.command("resend-verification")
@click.argument("username", type=USERNAME)
def resend_verification(username: str) -> None:
    """Mail the user a new link to confirm their email address."""
    with clear_errors():
        user = existing_user(username)
        if user.email is None:
            raise click.ClickException(f"{username!r} has no email address")
        if user.email_verified:
            raise click.ClickException(f"{user.email} is already verified")
        notices.send_verification(user, user.email)
    _report_delivery()
    click.echo(f"Sent a verification link to {user.email}.")


mail_cli = AppGroup("mail", help="Check the mail settings.")


@mail_cli.command("test")
@click.argument("address", type=EMAIL)
def test_mail(address: str) -> None:
    """Send a test message to ADDRESS now and say what happened (exit status 1: not sent)."""
    if users.email_error(address):
        raise click.ClickException(f"not an email address: {address!r}")
    message = mail.compose(
        address,
        "webapp mail test",
        ["This is a test message from webapp. Links in mail start with:"],
        current_app.config["BASE_URL"],
    )
    box = mail.outbox(current_app)
    if box.server is None:
        name = box.put(message)
        click.echo(f"Written to {os.path.join(box.folder, name)} (WEBAPP_MAIL_URL=file).")
        return
    server = box.server
    try:
        server.deliver(message)
    except (OSError, smtplib.SMTPException) as error:
        raise click.ClickException(
            f"not sent through {server.scheme}://{server.host}:{server.port}: "
            f"{type(error).__name__}: {error}"
        ) from None
    click.echo(f"Sent to {address} through {server.scheme}://{server.host}:{server.port}.")


def _report_delivery() -> None:
    """SMTP: send what the command queued now (the process ends at once), or say it waits."""
    box = mail.outbox(current_app)
    if box.server is not None and box.deliver_pending():
        click.echo(
            "The mail server refused or did not answer: the message waits in the outbox "
            f"({box.pending}) for the next try. {box.health()}",
            err=True,
        )


@users_cli.command("delete")
@click.argument("username", type=USERNAME)
def delete_user(username: str) -> None:
    """Delete a user; their sessions and remember-me tokens end with them."""
    with clear_errors():
        users.delete_user(get_db(), existing_user(username))
    click.echo(f"Deleted user {username!r}.")


@users_cli.command("set-password")
@click.argument("username", type=USERNAME)
@password_stdin_option
def set_password(username: str, password_stdin: bool) -> None:
    """Set a user's password; every session and remember-me token of theirs ends."""
    with clear_errors():
        user = existing_user(username)
        password = read_password(password_stdin)
        users.refuse_current_password(user, password)
        users.set_password(get_db(), user, password)
        ended = session_policy.end_all_sessions(user)
        events.record("password_changed", user_id=user.id, via="cli", sessions_ended=ended)
    click.echo(f"Password changed for {username!r}; {ended} session(s) ended.")


@users_cli.command("mfa-off")
@click.argument("username", type=USERNAME)
def mfa_off(username: str) -> None:
    """Turn a user's authenticator app off (a lost phone) and end all their sessions; their
    passkeys stay."""
    with clear_errors():
        user = existing_user(username)
        was_on = totp.disable(get_db(), user)
        ended = session_policy.end_all_sessions(user)
        events.record("security_changed", user_id=user.id, change="totp_disabled", via="cli")
    state = "turned off" if was_on else "was not on"
    click.echo(f"Authenticator app {state} for {username!r}; {ended} session(s) ended.")


sessions_cli = AppGroup("sessions", help="List and end users' sessions.")


@sessions_cli.command("list")
@click.option("--user", "username", type=USERNAME, help="Only this user's sessions.")
def list_sessions(username: str | None) -> None:
    """List live sessions: reference, user, device, address, created, last active."""
    with clear_errors():
        query = select(UserSession, User).join(User).order_by(UserSession.last_active_at.desc())
        if username is not None:
            query = query.where(UserSession.user_id == existing_user(username).id)
        rows = [(s, u) for s, u in get_db().execute(query) if session_index.is_live(s)]
    if not rows:
        click.echo("No live sessions.")
        return
    click.echo(f"{'ID':<16} {'USER':<16} {'DEVICE':<28} {'IP':<16} {'CREATED':<17} LAST ACTIVE")
    for row, user in rows:
        device = session_index.describe_device(row.user_agent)[:28]
        created = row.created_at.strftime("%Y-%m-%d %H:%M")
        active = row.last_active_at.strftime("%Y-%m-%d %H:%M")
        click.echo(
            f"{row.id:<16} {user.username:<16} {device:<28} {row.ip or '-':<16} {created:<17} "
            f"{active}"
        )


@sessions_cli.command("prune")
@click.option("--no-sweep", is_flag=True, help="Only the index; skip scanning the store folder.")
def prune_sessions(no_sweep: bool) -> None:
    """Delete expired sessions (index rows with their store entries, then expired store files)
    and expired remember-me tokens."""
    from flask import current_app

    with clear_errors():
        counts = pruning.prune(current_app._get_current_object(), sweep=not no_sweep)  # type: ignore[attr-defined]
    click.echo(
        f"Pruned {counts['index']} expired signed-in session(s) and "
        f"{counts['store']} other expired store entr{'y' if counts['store'] == 1 else 'ies'}; "
        f"{counts['remember']} expired remember-me token(s)."
    )


@sessions_cli.command("revoke")
@click.argument("ref", required=False, type=SESSION_REF)
@click.option(
    "--user",
    "username",
    type=USERNAME,
    help="End every session and remember-me token of this user.",
)
def revoke_sessions(ref: str | None, username: str | None) -> None:
    """End one session (by ID from `sessions list`) or all of a user's (--user)."""
    if (ref is None) == (username is None):
        raise click.UsageError("give either a session ID or --user USERNAME")
    with clear_errors():
        if username is not None:
            user = existing_user(username)
            ended = session_policy.end_all_sessions(user)
            events.record("sessions_revoked", user_id=user.id, via="cli", count=ended)
            click.echo(f"Ended {ended} session(s) of {username!r} and their remember-me tokens.")
            return
        row = get_db().get(UserSession, ref)
        if row is None:
            raise click.ClickException(f"no such session: {ref!r}")
        session_index.revoke([row])
        events.record("session_revoked", user_id=row.user_id, via="cli", revoked=ref)
    click.echo(f"Ended session {ref}.")


database_cli = AppGroup("db", help="The database schema: upgrade it, show or check its revision.")


@contextmanager
def _clear_schema_errors() -> Iterator[None]:
    """Database and Alembic failures as one line on stderr and exit status 1."""
    try:
        yield
    except SQLAlchemyError as error:
        raise click.ClickException(
            f"database unreachable or failing: {error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}"
        ) from None
    except CommandError as error:
        raise click.ClickException(f"migration failed: {error}") from None


def _engine() -> Engine:
    return engine_of(current_app)


@database_cli.command("upgrade")
def upgrade_command() -> None:
    """Upgrade the database to the latest schema revision (creates the tables when it is
    empty). Run it before starting webapp after an update; safe to repeat."""
    with _clear_schema_errors():
        before, after = schema.upgrade(_engine())
    if before.revisions == after.revisions:
        click.echo(f"Database already at the latest revision ({after.head}).")
    else:
        click.echo(f"Database upgraded: was {before.describe()}, now {after.describe()}.")


@database_cli.command("current")
def current_command() -> None:
    """Show the database's schema revision."""
    with _clear_schema_errors():
        state = schema.state_of(_engine())
    click.echo(state.describe())


@database_cli.command("check")
def check_command() -> None:
    """Exit 0 when the database is at the latest revision, 1 otherwise."""
    with _clear_schema_errors():
        state = schema.state_of(_engine())
    problem = state.problem()
    if problem:
        raise click.ClickException(problem)
    click.echo(f"Database at the latest revision ({state.head}).")


@database_cli.command("revision")
@click.option("-m", "--message", required=True, help="What the revision does.")
@click.option(
    "--autogenerate", is_flag=True, help="Fill it in from webapp/models.py (database at latest)."
)
def revision_command(message: str, autogenerate: bool) -> None:
    """Write a new revision into webapp/migrations/versions (for developers)."""
    latest = schema.head()
    rev_id = f"{int(latest) + 1:04d}" if latest.isdigit() else None
    with _clear_schema_errors(), _engine().connect() as connection:
        written = command.revision(
            schema.alembic_config(connection),
            message=message,
            autogenerate=autogenerate,
            rev_id=rev_id,
        )
    schema._scripts.cache_clear()
    for script in written if isinstance(written, list) else [written]:
        if script is not None:
            click.echo(f"Wrote {script.path}")


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(sessions_cli)
    app.cli.add_command(database_cli)
    app.cli.add_command(mail_cli)
