"""htmx request helpers: who is asking, and how to send an htmx request to the sign-in page."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from flask import Response, request, url_for

from .safe_redirect import safe_next


def is_htmx() -> bool:
    """Any request made by htmx, boosted page navigation included."""
    return request.headers.get("HX-Request") == "true"


def is_boosted() -> bool:
    """A page navigation made by hx-boost: it wants a whole page, not a fragment."""
    return request.headers.get("HX-Boosted") == "true"


def wants_fragment() -> bool:
    return is_htmx() and not is_boosted()


def current_page() -> str | None:
    """The page an htmx request came from (path and query of HX-Current-URL), if safe."""
    url = request.headers.get("HX-Current-URL", "")
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    page = parts.path + ("?" + parts.query if parts.query else "")
    return safe_next(page)


def login_url(next_page: str | None) -> str:
    """/login, carrying `next` (percent-encoded) when there is a safe one."""
    target = url_for("auth.login")
    return f"{target}?{urlencode({'next': next_page})}" if next_page else target


def htmx_redirect(location: str, status: int = 401) -> Response:
    """An answer that makes htmx navigate the whole page, never swap a fragment.

    htmx ignores HX-* headers on 3xx answers and the browser follows them silently.
    """
    response = Response(status=status)
    response.headers["HX-Redirect"] = location
    return response
