"""CSRF over HTTPS: a POST with a valid token must come from this site, as its Origin header
says or, without one, its Referer (OWASP's order). Scripts that send Origin alone work; a
request naming another site, or no site at all, is a 400 that says why."""

from __future__ import annotations

import pytest

HTTPS = "https://localhost"


@pytest.fixture
def script(client, auth, user):  # type: ignore[no-untyped-def]
    """A signed-in script over HTTPS: the session cookie and the token from GET /csrf."""
    auth.login()
    token = client.get("/csrf", base_url=HTTPS).get_json()["csrfToken"]

    def post(*, json: bool = False, **headers: str):  # type: ignore[no-untyped-def]
        if json:
            headers["Accept"] = "application/json"
        return client.post(
            "/session/keepalive", base_url=HTTPS, headers={"X-CSRFToken": token, **headers}
        )

    return post


def test_a_same_origin_origin_alone_is_enough(script):
    assert script(Origin=HTTPS).status_code == 303


def test_a_same_origin_referer_alone_is_enough(script):
    assert script(Referer=f"{HTTPS}/account/sessions").status_code == 303


def test_origin_is_what_counts_when_both_are_sent(script):
    assert script(Origin=HTTPS, Referer="https://evil.example/").status_code == 303
    refused = script(Origin="https://evil.example", Referer=f"{HTTPS}/")
    assert refused.status_code == 400


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"Origin": "https://evil.example"}, "its Origin header is 'https://evil.example'"),
        ({"Origin": "http://localhost"}, "its Origin header is 'http://localhost'"),
        ({"Origin": "https://localhost:8443"}, "its Origin header is 'https://localhost:8443'"),
        ({"Origin": "https://localhost.evil.example"}, "Origin header"),
        ({"Origin": "null"}, "its Origin header is 'null'"),
        ({"Origin": "https://localhost:99999"}, "Origin header"),
        ({"Referer": "https://evil.example/login"}, "its Referer header is"),
        ({"Referer": "not a url"}, "its Referer header is 'not a url'"),
    ],
)
def test_another_site_is_a_400_that_says_so(script, headers, named):
    page = script(**headers)
    assert page.status_code == 400
    text = page.get_data(as_text=True)
    assert "comes from another site" in text and named.replace("'", "&#39;") in text
    api = script(json=True, **headers)
    assert api.status_code == 400
    assert api.get_json()["error"].startswith("The request comes from another site (its ")


def test_neither_origin_nor_referer_is_a_400_that_says_what_to_send(script):
    """Flask-WTF's strict mode refuses it, and so does webapp: nothing says which site sent it."""
    answer = script(json=True)
    assert answer.status_code == 400
    assert answer.get_json()["error"] == (
        "The request does not say which site sent it: over HTTPS, send an Origin or a "
        "Referer header naming https://localhost."
    )


def test_the_token_is_still_checked_first(script, client):
    client.get("/csrf", base_url=HTTPS)
    refused = client.post(
        "/session/keepalive", base_url=HTTPS, headers={"X-CSRFToken": "forged", "Origin": HTTPS}
    )
    assert refused.status_code == 400
    assert "security token" in refused.get_data(as_text=True)


def test_a_sign_in_form_over_https_with_origin_only_signs_in(client, user):
    page = client.get("/login", base_url=HTTPS).get_data(as_text=True)
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    form = {"username": "alice", "password": "correct horse battery", "csrf_token": token}
    signed_in = client.post("/login", data=form, base_url=HTTPS, headers={"Origin": HTTPS})
    assert signed_in.status_code == 303
    assert client.get("/session", base_url=HTTPS).get_json()["user"]["username"] == "alice"


def test_the_script_docs_scripts_md_shows_works(app, user):
    """Token from GET /csrf (fetched again after sign-in: it changes), X-CSRFToken, Origin."""
    client = app.test_client()

    def post(path: str, **data: str):  # type: ignore[no-untyped-def]
        token = client.get("/csrf", base_url=HTTPS).get_json()["csrfToken"]
        headers = {"Origin": HTTPS, "X-CSRFToken": token}
        return client.post(path, data=data, base_url=HTTPS, headers=headers)

    signed_in = post("/login", username="alice", password="correct horse battery")
    assert signed_in.status_code == 303
    assert client.get("/session", base_url=HTTPS).get_json()["user"]["username"] == "alice"
    assert post("/logout").status_code == 303
    assert client.get("/session", base_url=HTTPS).get_json() == {}


def test_plain_http_needs_the_token_only(client, auth, user):
    """Without TLS, headers prove nothing more than the token (make run, on loopback)."""
    auth.login()
    token = client.get("/csrf").get_json()["csrfToken"]
    assert client.post("/session/keepalive", headers={"X-CSRFToken": token}).status_code == 303


def test_origin_of():
    from webapp.web.same_origin import origin_of

    assert origin_of("https://Example.com/a?b") == ("https", "example.com", 443)
    assert origin_of("http://example.com:8080") == ("http", "example.com", 8080)
    assert origin_of("null") is None
    assert origin_of("https://example.com:99999") is None
    assert origin_of("ftp://example.com") is None
