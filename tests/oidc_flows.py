"""Walking a browser through the test OpenID provider (tests/support/oidc/provider.js) with the
Flask test client on the app's side and `requests` on the provider's, following redirects
across the two hosts by hand."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


class ProviderBrowser:
    """One browser: its cookies at the provider (a `requests` session) and at the app (the
    Flask client)."""

    def __init__(self, client: FlaskClient, issuer: str) -> None:
        self.client = client
        self.issuer = issuer
        self.http = requests.Session()

    def follow_at_provider(self, url: str) -> requests.Response | str:
        """Follow redirects inside the provider; the page it stops on, or the URL it sends
        the browser to outside the provider."""
        while True:
            response = self.http.get(url, allow_redirects=False, timeout=10)
            if not response.is_redirect:
                return response
            url = urljoin(url, response.headers["Location"])
            if not url.startswith(self.issuer):
                return url

    def submit(self, page: requests.Response, **fields: str) -> requests.Response | str:
        """Post the page's first form with its hidden fields and `fields`; then follow on."""
        action = FORM_ACTION.search(page.text)
        assert action, page.text
        data = dict(HIDDEN.findall(page.text)) | fields
        response = self.http.post(
            urljoin(page.url, action.group(1)), data=data, allow_redirects=False, timeout=10
        )
        if not response.is_redirect:
            return response
        target = urljoin(page.url, response.headers["Location"])
        return self.follow_at_provider(target) if target.startswith(self.issuer) else target

    def authorize(self, start: str, account: str = "alice", consent: bool = True) -> str:
        """From the app's redirect to the provider to the URL the provider sends back."""
        page = self.follow_at_provider(start)
        assert isinstance(page, requests.Response), page
        if not isinstance(page, str) and 'name="login"' in page.text:
            page = self.submit(page, prompt="login", login=account, password="any")
        if isinstance(page, requests.Response) and not consent:
            abort = re.search(r'href="([^"]*/abort)"', page.text)
            assert abort, page.text
            result = self.follow_at_provider(urljoin(page.url, abort.group(1)))
            assert isinstance(result, str)
            return result
        if isinstance(page, requests.Response):
            page = self.submit(page, prompt="consent")
        assert isinstance(page, str), page
        return page

    def app_get(self, url: str) -> TestResponse:
        parts = urlsplit(url)
        return self.client.get(parts.path + ("?" + parts.query if parts.query else ""))

    def sign_in(
        self, account: str = "alice", path: str = "/login/test", consent: bool = True
    ) -> TestResponse:
        """The app's answer to the provider's redirect back (the callback)."""
        start = self.client.get(path)
        assert start.status_code == 302, start.get_data(as_text=True)
        return self.app_get(self.authorize(start.headers["Location"], account, consent))

    def end_provider_session(self, url: str | None = None) -> str:
        """Confirm the provider's logout page (RP-initiated when `url` comes from the app);
        the URL it sends the browser back to."""
        page = self.follow_at_provider(url or f"{self.issuer}/session/end")
        assert isinstance(page, requests.Response), page
        result = self.submit(page, logout="yes")
        if isinstance(result, requests.Response):  # the provider's own "signed out" page
            return result.url
        return result
