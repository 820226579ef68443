"""The HTML forms (Flask-WTF: every one carries and checks a CSRF token)."""

from __future__ import annotations

from collections.abc import Callable

from flask_wtf import FlaskForm
from wtforms import BooleanField, Field, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, ValidationError

from . import accounts
from .passwords import policy_error


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired("Enter your username.")])
    password = PasswordField("Password", validators=[InputRequired("Enter your password.")])
    remember = BooleanField("Remember me on this device")
    next = HiddenField()


def _check(rule: Callable[[str], str | None], optional: bool = False) -> Callable[..., None]:
    """A WTForms validator from one of accounts' rules (which return a message or None)."""

    def validator(_form: FlaskForm, field: Field) -> None:
        if optional and not field.data:
            return
        error = rule(field.data or "")
        if error:
            raise ValidationError(error)

    return validator


class SignupForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[DataRequired("Choose a username."), _check(accounts.username_error)],
    )
    name = StringField(
        "Name", validators=[DataRequired("Enter your name."), _check(accounts.name_error)]
    )
    email = StringField(
        "Email", validators=[DataRequired("Enter your email."), _check(accounts.email_error)]
    )
    password = PasswordField(
        "Password", validators=[InputRequired("Choose a password."), _check(policy_error)]
    )
    confirm = PasswordField(
        "Confirm password",
        validators=[
            InputRequired("Repeat the password."),
            EqualTo("password", "Passwords differ."),
        ],
    )


class LogoutForm(FlaskForm):
    """Only the CSRF token: signing out must be a deliberate POST."""


class PasswordConfirmForm(FlaskForm):
    """Re-entering the password: before ending sessions, or to become fresh again."""

    password = PasswordField("Your password", validators=[InputRequired("Enter your password.")])
    next = HiddenField()


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[InputRequired("Enter your current password.")]
    )
    new_password = PasswordField(
        "New password", validators=[InputRequired("Choose a password."), _check(policy_error)]
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[
            InputRequired("Repeat the password."),
            EqualTo("new_password", "Passwords differ."),
        ],
    )


class ProfileForm(FlaskForm):
    name = StringField(
        "Name", validators=[DataRequired("Enter your name."), _check(accounts.name_error)]
    )
    email = StringField(
        "Email (optional)", validators=[_check(accounts.email_error, optional=True)]
    )
