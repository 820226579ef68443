"""Static URLs that carry their file's content hash (`?v=...`), so that browsers may keep a file
for a year: a release that changes a file changes its URL, and a page never loads a stale
session.js, or an htmx that fails its integrity hash."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from flask import Flask, Response, current_app, request

VERSION_ARG = "v"
#: For a URL whose version is the file's: it can never change.
LONG_CACHE = "public, max-age=31536000, immutable"
#: For any other: kept, but revalidated by its ETag (a 304 when unchanged).
REVALIDATE = "public, no-cache"


class StaticVersions:
    """Each static file's content hash, computed once per change of its size or mtime."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.known: dict[str, tuple[tuple[int, int], str]] = {}

    def of(self, filename: str) -> str | None:
        """The file's version, or None when there is no such file."""
        path = os.path.join(self.folder, filename)
        try:
            info = os.stat(path)
        except OSError:
            return None
        stamp = (info.st_size, info.st_mtime_ns)
        known = self.known.get(filename)
        if known is None or known[0] != stamp:
            with open(path, "rb") as handle:
                known = (stamp, hashlib.sha256(handle.read()).hexdigest()[:12])
            self.known[filename] = known
        return known[1]


def add_version(endpoint: str, values: dict[str, Any]) -> None:
    """url_defaults: url_for("static", filename=...) gets ?v=<the file's hash>."""
    if endpoint != "static" or VERSION_ARG in values or "filename" not in values:
        return
    version = current_app.extensions["webapp.static_versions"].of(values["filename"])
    if version is not None:
        values[VERSION_ARG] = version


def cache_versioned(response: Response) -> Response:
    """after_request: a static file asked for at its current version is cached for a year;
    any other (no version, an old one) is revalidated. docs/examples/nginx.conf does the same."""
    if request.endpoint != "static" or response.status_code not in (200, 304):
        return response
    asked = request.args.get(VERSION_ARG)
    filename = (request.view_args or {}).get("filename", "")
    current = asked and asked == current_app.extensions["webapp.static_versions"].of(filename)
    response.headers["Cache-Control"] = LONG_CACHE if current else REVALIDATE
    return response


def init_app(app: Flask) -> None:
    assert app.static_folder is not None
    app.extensions["webapp.static_versions"] = StaticVersions(app.static_folder)
    app.url_defaults(add_version)
    app.after_request(cache_versioned)
