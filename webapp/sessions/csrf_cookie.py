"""The anonymous visitor's CSRF token, in a signed cookie instead of the session store."""

from __future__ import annotations

from flask import Flask, Request, Response
from itsdangerous import BadSignature, TimestampSigner


class AnonymousCsrfCookie:
    """An anonymous visitor's CSRF token, in a signed cookie instead of the session store.

    Every page with a form needs a token, so a server-side session per anonymous visit would
    let anyone fill the store (and evict nothing, threshold 0: only disk). Signed with the
    secret key and `__Host-` scoped, the cookie cannot be forged or planted from a subdomain;
    Flask-WTF still compares the form's token with session["csrf_token"], filled from it.
    """

    SALT = "webapp-anonymous-csrf"

    def __init__(self, app: Flask) -> None:
        self.name = "__Host-csrf" if app.config["SESSION_COOKIE_SECURE"] else "csrf"
        self.max_age = app.config["ABSOLUTE_TIMEOUT"]
        self.secure = app.config["SESSION_COOKIE_SECURE"]
        self.signer = TimestampSigner(app.secret_key or "", salt=self.SALT)

    def read(self, request: Request) -> str | None:
        value = request.cookies.get(self.name)
        if not value:
            return None
        try:
            return self.signer.unsign(value, max_age=self.max_age).decode()
        except BadSignature:
            return None

    def write(self, response: Response, token: str) -> None:
        response.set_cookie(
            self.name,
            self.signer.sign(token).decode(),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def delete(self, response: Response) -> None:
        response.delete_cookie(
            self.name, path="/", secure=self.secure, httponly=True, samesite="Lax"
        )
