"""The HTML forms (Flask-WTF: every one carries and checks a CSRF token).

Every field has a maximum length and refuses control characters where they cannot belong,
with a message on the form: values too long or unprintable never reach Argon2 or the
database (PostgreSQL cannot store a NUL character, and its columns have sizes).
"""

from __future__ import annotations

from collections.abc import Callable

from flask_wtf import FlaskForm
from wtforms import BooleanField, Field, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, ValidationError

from . import passwords, users
from .passwords import policy_error


def _check(rule: Callable[[str], str | None], optional: bool = False) -> Callable[..., None]:
    """A WTForms validator from one of accounts' rules (which return a message or None)."""

    def validator(_form: FlaskForm, field: Field) -> None:
        if optional and not field.data:
            return
        error = rule(field.data or "")
        if error:
            raise ValidationError(error)

    return validator


def _printable(what: str) -> Callable[..., None]:
    """Refuse control characters (NUL, newlines, escapes): no name or address holds them."""

    def validator(_form: FlaskForm, field: Field) -> None:
        if any(ord(c) < 32 or ord(c) == 127 for c in field.data or ""):
            raise ValidationError(f"{what} must not contain control characters.")

    return validator


def _at_most(length: int, what: str) -> Length:
    return Length(max=length, message=f"{what} must be at most {length} characters.")


#: Any password field: a longer one cannot be right (the policy's maximum), so it is refused
#: before it costs an Argon2 hash.
PASSWORD_LENGTH = _at_most(passwords.MAX_LENGTH, "Password")


class LoginForm(FlaskForm):
    username = StringField(
        "Username or email",
        validators=[
            DataRequired("Enter your username."),
            _at_most(users.EMAIL_MAX, "Username"),
            _printable("Username"),
        ],
    )
    password = PasswordField(
        "Password", validators=[InputRequired("Enter your password."), PASSWORD_LENGTH]
    )
    remember = BooleanField("Remember me on this device")
    #: Checked by safe_next (a same-site path of at most 2048 characters) where it is used: a
    #: bad one falls back to /profile rather than failing a form whose field nobody sees.
    next = HiddenField()


class SignupForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[DataRequired("Choose a username."), _check(users.username_error)],
    )
    name = StringField(
        "Name", validators=[DataRequired("Enter your name."), _check(users.name_error)]
    )
    email = StringField(
        "Email",
        validators=[
            DataRequired("Enter your email."),
            _printable("Email"),
            _check(users.email_error),
        ],
    )
    password = PasswordField("Password", validators=[InputRequired("Choose a password.")])
    confirm = PasswordField(
        "Confirm password",
        validators=[
            InputRequired("Repeat the password."),
            PASSWORD_LENGTH,
            EqualTo("password", "Passwords differ."),
        ],
    )

    def validate_password(self, field: Field) -> None:
        """The password rules, which include not being the username chosen here."""
        error = policy_error(field.data or "", self.username.data)
        if error:
            raise ValidationError(error)


class LogoutForm(FlaskForm):
    """Only the CSRF token: signing out must be a deliberate POST."""


class PasswordConfirmForm(FlaskForm):
    """Re-entering the password: before ending sessions, or to become fresh again."""

    password = PasswordField(
        "Your password", validators=[InputRequired("Enter your password."), PASSWORD_LENGTH]
    )
    next = HiddenField()  # checked by safe_next, as LoginForm's


class SetPasswordForm(FlaskForm):
    """A first password, for an account that has none (made through an OpenID provider)."""

    new_password = PasswordField(
        "New password", validators=[InputRequired("Choose a password."), _check(policy_error)]
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[
            InputRequired("Repeat the password."),
            PASSWORD_LENGTH,
            EqualTo("new_password", "Passwords differ."),
        ],
    )


class ChangePasswordForm(SetPasswordForm):
    current_password = PasswordField(
        "Current password",
        validators=[InputRequired("Enter your current password."), PASSWORD_LENGTH],
    )


class ProfileForm(FlaskForm):
    name = StringField(
        "Name", validators=[DataRequired("Enter your name."), _check(users.name_error)]
    )
    email = StringField(
        "Email (optional)",
        validators=[_printable("Email"), _check(users.email_error, optional=True)],
    )
