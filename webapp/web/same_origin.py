"""CSRF over HTTPS: besides the token, the request must come from this site, as its Origin
header says (or, without one, its Referer).

Flask-WTF's own HTTPS check (WTF_CSRF_SSL_STRICT) reads the Referer alone, so a script or a
privacy extension that sends only Origin got 400. OWASP's order is used instead: Origin when
present, else Referer; a request with neither is refused, as Flask-WTF refuses it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import g, request
from flask_wtf.csrf import CSRFError, CSRFProtect

DEFAULT_PORTS = {"http": 80, "https": 443}
#: Longest header value quoted back in a refusal.
QUOTED_MAX = 200


class CrossSiteRequest(CSRFError):
    """A request with a valid token that another site (or no site it names) sent; its
    description is the whole message shown."""


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, the default port filled in; None when it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number, or out of range
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname, port


def check_same_origin() -> None:
    """Raise CrossSiteRequest unless Origin (else Referer) names this site."""
    this_site = f"{request.scheme}://{request.host}"
    origin = request.headers.get("Origin")
    header, value = ("Origin", origin) if origin is not None else ("Referer", request.referrer)
    if value is None:
        raise CrossSiteRequest(
            "The request does not say which site sent it: over HTTPS, send an Origin or a "
            f"Referer header naming {this_site}."
        )
    if origin_of(value) != origin_of(this_site):
        raise CrossSiteRequest(
            f"The request comes from another site (its {header} header is "
            f"{value[:QUOTED_MAX]!r}); only {this_site} may send it."
        )


class SameOriginCSRFProtect(CSRFProtect):
    """Flask-WTF's CSRFProtect (run with WTF_CSRF_SSL_STRICT off) plus the same-origin check
    on HTTPS, for exactly the requests whose token it checked (not its exempt views)."""

    def protect(self, apply_exemptions: bool = False) -> None:
        super().protect(apply_exemptions=apply_exemptions)
        if g.get("csrf_valid") and request.is_secure:
            check_same_origin()
