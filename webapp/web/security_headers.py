"""Headers on every response: a strict Content-Security-Policy (no inline code, no eval) and
friends. htmx runs under it because it is configured with allowEval and inline styles off.
Nothing but static files is stored by a browser or a proxy."""

from __future__ import annotations

from flask import Flask, Response, request

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # An HTTPS POST must name this site in Origin or, without one, Referer (same_origin.py):
    # "same-origin" keeps that fallback for clients that send no Origin.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


#: For every answer but a static file's: pages show account data (the widget, the profile,
#: the sessions list) and carry CSRF tokens, so none may be kept: after sign-out, the Back
#: button on a shared computer must not show the previous user's pages.
NO_STORE = "no-store"


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":  # static_files.py sets their long cache
        response.headers.setdefault("Cache-Control", NO_STORE)
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
