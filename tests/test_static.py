"""The vendored htmx, its integrity hash, and templates free of inline code (the CSP)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from webapp.config import HTMX_INTEGRITY

ROOT = Path(__file__).resolve().parent.parent
HTMX = ROOT / "static" / "vendor" / "htmx"


def test_htmx_is_vendored_with_licence_and_version():
    assert (HTMX / "LICENSE").read_text().strip()
    assert "htmx.org 2.0.11" in (HTMX / "VERSION").read_text()
    assert 'version:"2.0.11"' in (HTMX / "htmx.min.js").read_text().replace(" ", "")


def test_htmx_integrity_hash_matches_the_file():
    digest = hashlib.sha384((HTMX / "htmx.min.js").read_bytes()).digest()
    assert "sha384-" + base64.b64encode(digest).decode() == HTMX_INTEGRITY


def test_pages_load_htmx_with_its_integrity_hash(client):
    html = client.get("/").get_data(as_text=True)
    assert f'integrity="{HTMX_INTEGRITY}"' in html
    assert "/static/vendor/htmx/htmx.min.js" in html
    assert "https://" not in html.split("<body>")[0]  # no CDN


def test_htmx_config_disables_eval_and_injected_styles(client):
    html = client.get("/").get_data(as_text=True)
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']+)'", html)
    assert meta and '"allowEval": false' in meta.group(1)
    assert '"includeIndicatorStyles": false' in meta.group(1)


def test_templates_have_no_inline_scripts_styles_or_handlers():
    for path in (ROOT / "templates").rglob("*.html"):
        text = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)  # Jinja comments
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|hx-on|javascript:", text), path


def test_static_files_are_served(client):
    for path in ("/static/js/session.js", "/static/css/app.css", "/static/vendor/htmx/htmx.min.js"):
        with client.get(path) as response:
            assert response.status_code == 200


# -- versioned URLs --------------------------------------------------------------------------

STATIC_URL = re.compile(r'(?:src|href)="(/static/([^"?]+)\?v=([0-9a-f]+))"')


def test_pages_link_every_static_file_at_its_content_hash(client):
    html = client.get("/").get_data(as_text=True)
    assert not re.search(r'(?:src|href)="/static/[^"?]+"', html), "a static URL without ?v="
    linked = {name: version for _, name, version in STATIC_URL.findall(html)}
    assert set(linked) >= {"js/session.js", "css/app.css", "vendor/htmx/htmx.min.js"}
    for name, version in linked.items():
        assert version == hashlib.sha256((ROOT / "static" / name).read_bytes()).hexdigest()[:12]


def test_a_file_at_its_current_version_is_cached_for_a_year_others_are_revalidated(client):
    html = client.get("/").get_data(as_text=True)
    url, name, _version = next(m for m in STATIC_URL.findall(html) if m[1] == "js/session.js")
    with client.get(url) as current:
        assert current.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        etag = current.headers["ETag"]
    with client.get(url, headers={"If-None-Match": etag}) as revalidated:
        assert revalidated.status_code == 304
        assert revalidated.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # No version, or one from an older release: the file may change under that URL.
    for other in (f"/static/{name}", f"/static/{name}?v=000000000000"):
        with client.get(other) as response:
            assert response.status_code == 200
            assert response.headers["Cache-Control"] == "public, no-cache", other


def test_a_changed_file_gets_a_new_version(tmp_path):
    from webapp.web.static_files import StaticVersions

    versions = StaticVersions(str(tmp_path))
    script = tmp_path / "app.js"
    script.write_text("one")
    first = versions.of("app.js")
    assert first == hashlib.sha256(b"one").hexdigest()[:12]
    script.write_text("two, longer")
    assert versions.of("app.js") not in (None, first)
    assert versions.of("missing.js") is None
