"""Command line: `flask --app webapp users create|list|delete|set-password`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from . import accounts
from .db import get_db
from .models import User

users = AppGroup("users", help="Create, list, delete users and set their passwords.")


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn refusals and database failures into a message on stderr and exit status 1."""
    try:
        yield
    except accounts.AccountError as error:
        raise click.ClickException(str(error)) from None
    except SQLAlchemyError as error:
        raise click.ClickException(
            f"database unreachable or failing: {error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}"
        ) from None


def read_password(from_stdin: bool) -> str:
    """One line from standard input, or a hidden prompt asked twice."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def existing_user(username: str) -> User:
    user = accounts.find_user(get_db(), username)
    if user is None:
        raise click.ClickException(f"no such user: {username!r}")
    return user


password_stdin_option = click.option(
    "--password-stdin", is_flag=True, help="Read the password as one line from standard input."
)


@users.command("create")
@click.argument("username")
@click.option("--name", help="Display name (default: the username).")
@click.option("--email", help="Email address.")
@password_stdin_option
def create_user(username: str, name: str | None, email: str | None, password_stdin: bool) -> None:
    """Create a user."""
    with clear_errors():
        error = accounts.username_error(username)
        if error:
            raise accounts.AccountError(error)
        if accounts.find_user(get_db(), username) is not None:
            raise accounts.AccountError(f"The username {username!r} is taken.")
        user = accounts.create_user(get_db(), username, read_password(password_stdin), name, email)
    click.echo(f"Created user {user.username!r}.")


@users.command("list")
def list_users() -> None:
    """List users."""
    with clear_errors():
        rows = get_db().scalars(select(User).order_by(User.username_key)).all()
    if not rows:
        click.echo("No users yet.")
        return
    click.echo(f"{'USERNAME':<24} {'NAME':<24} {'EMAIL':<32} CREATED")
    for user in rows:
        created = user.created_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{user.username:<24} {user.name:<24} {user.email or '-':<32} {created}")


@users.command("delete")
@click.argument("username")
def delete_user(username: str) -> None:
    """Delete a user; their sessions and remember-me tokens stop working."""
    with clear_errors():
        accounts.delete_user(get_db(), existing_user(username))
    click.echo(f"Deleted user {username!r}.")


@users.command("set-password")
@click.argument("username")
@password_stdin_option
def set_password(username: str, password_stdin: bool) -> None:
    """Set a user's password; their remember-me tokens are revoked."""
    with clear_errors():
        user = existing_user(username)
        accounts.set_password(get_db(), user, read_password(password_stdin))
    click.echo(f"Password changed for {username!r}.")


def init_app(app: Flask) -> None:
    app.cli.add_command(users)
