"""The Host header: only the names WEBAPP_TRUSTED_HOSTS lists are served (after ProxyFix,
X-Forwarded-Host), any other is a 400 whose log line names the setting; and no redirect is
built from the request's Host: Werkzeug's own (merge slashes) are paths on this site."""

from __future__ import annotations

import logging

import pytest
from helpers import PASSWORD, AuthActions

from webapp import config, create_app
from webapp.config import ConfigError

UNTRUSTED = "The Host header names a host this site does not serve."


def assert_refused(response, caplog=None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 400
    assert "Location" not in response.headers
    if response.is_json:
        assert response.get_json() == {"error": UNTRUSTED}
    else:
        assert UNTRUSTED in response.get_data(as_text=True)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example"])
def test_an_untrusted_host_is_a_400_and_the_log_names_the_setting(app, host, caplog):
    caplog.set_level(logging.WARNING, "webapp.web.request_guard")
    assert_refused(app.test_client().get("/", headers={"Host": host}))
    assert_refused(app.test_client().get("/api/hello", headers={"Host": host}))
    assert "WEBAPP_TRUSTED_HOSTS" in caplog.text and repr(host) in caplog.text


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:8000", "127.0.0.1:5000"]
)
def test_loopback_is_trusted_by_default_on_any_port(app, host):
    """`make run` serves 127.0.0.1:8000 (BIND moves it) with nothing set."""
    assert config.TRUSTED_HOSTS == "localhost,127.0.0.1"
    assert app.test_client().get("/", headers={"Host": host}).status_code == 200


def test_the_poll_fast_path_refuses_an_untrusted_host_too(app):
    client = app.test_client()
    assert client.get("/session").get_json() == {}
    assert_refused(client.get("/session", headers={"Host": "evil.example"}))
    fragment = {"Host": "evil.example", "HX-Request": "true"}
    assert_refused(client.get("/session", headers=fragment))


def test_an_untrusted_host_signs_nobody_in_from_a_remember_cookie(app, user):
    """The refusal comes before every other hook: no remember-me redemption, no session."""
    client = app.test_client()
    AuthActions(client).login(remember=True)
    client.delete_cookie("session")
    assert_refused(client.get("/profile", headers={"Host": "evil.example"}))
    assert client.get_cookie("session") is None
    assert client.get("/profile").status_code == 200  # the token is still there, unused


def test_merge_slashes_redirect_to_an_untrusted_host_is_a_400(app, user):
    client = app.test_client()
    AuthActions(client).login()
    assert_refused(client.get("/account//sessions", headers={"Host": "evil.example"}))


def test_merge_slashes_redirect_is_a_path_on_this_site(app, user):
    client = app.test_client()
    AuthActions(client).login()
    response = client.get("/account//sessions", headers={"Host": "localhost:8000"})
    assert (response.status_code, response.headers["Location"]) == (308, "/account/sessions")
    assert client.get(response.headers["Location"]).status_code == 200


def test_a_redirect_keeps_the_query_percent_encoded_even_a_raw_newline(client):
    """A raw newline in the query made Werkzeug's Location raise ValueError: a 500."""
    raw = "x=\n1&next=%2Fprofile&y=a b&z=\xc3\xa9<>"  # as a server passes it (latin-1)
    response = client.get("/static//etc/passwd", environ_overrides={"QUERY_STRING": raw})
    assert response.status_code == 308
    assert response.headers["Location"] == (
        "/static/etc/passwd?x=%0A1&next=%2Fprofile&y=a%20b&z=%C3%A9%3C%3E"
    )


@pytest.fixture
def proxied_app(app_config):  # type: ignore[no-untyped-def]
    return create_app({**app_config, "PROXY_HOPS": 1, "TRUSTED_HOSTS": "webapp.example.com"})


def test_behind_a_proxy_the_forwarded_host_is_the_one_checked(proxied_app):
    client = proxied_app.test_client()
    nginx = {"Host": "127.0.0.1:8000", "X-Forwarded-Proto": "https"}
    good = client.get("/", headers={**nginx, "X-Forwarded-Host": "webapp.example.com"})
    assert good.status_code == 200
    evil = {**nginx, "X-Forwarded-Host": "evil.example"}
    assert_refused(client.get("/", headers=evil))
    assert_refused(client.get("/session", headers=evil))
    assert_refused(client.get("/account//sessions", headers=evil))
    # Without the header the Host itself is checked: loopback is no longer in the list.
    assert_refused(client.get("/", headers=nginx))


def test_configured_names_and_subdomains_are_served_and_nothing_else(app_config):
    app = create_app({**app_config, "TRUSTED_HOSTS": "webapp.example.com, .example.org"})
    client = app.test_client()
    for host in ("webapp.example.com", "webapp.example.com:443", "example.org", "a.example.org"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in ("localhost", "example.com", "evil.example.com", "example.org.evil.example"):
        assert_refused(client.get("/", headers={"Host": host}))


def test_trusted_hosts_is_read_from_the_environment_as_a_list():
    found = config.from_environment({"WEBAPP_TRUSTED_HOSTS": "A.example.com, b.example.com,"})
    config.validate({**config.defaults(), **found})
    assert config.trusted_hosts(found["TRUSTED_HOSTS"]) == ["a.example.com", "b.example.com"]
    assert config.trusted_hosts(["x.example"]) == ["x.example"]  # instance/config.py


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "must name at least one host"),
        (" , ", "must name at least one host"),
        ("webapp.example.com:443", "no port"),
        ("https://webapp.example.com", "no scheme"),
        ("[::1]", "cannot hold an IPv6 address"),
        ("::1", "cannot hold an IPv6 address"),
        ("web app.example.com", "is not a host name"),
        ("*", "is not a host name"),
    ],
)
def test_a_trusted_hosts_value_that_cannot_work_stops_the_start(value, says):
    with pytest.raises(ConfigError, match="WEBAPP_TRUSTED_HOSTS") as error:
        config.validate({**config.defaults(), "TRUSTED_HOSTS": value})
    assert says in str(error.value)


def test_sign_in_works_under_a_configured_name(app_config):
    from webapp.db import get_db
    from webapp.users import create_user

    # The test client sends Host: SERVER_NAME.
    named = {"TRUSTED_HOSTS": "webapp.example.com", "SERVER_NAME": "webapp.example.com"}
    app = create_app({**app_config, **named})
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()
    assert AuthActions(client).login().headers["Location"] == "/profile"
    assert client.get("/profile").status_code == 200
