"""Mail through a real SMTP server (aiosmtpd on a loopback port): the file outbox, plain SMTP,
STARTTLS with a login and a throwaway certificate, a server that is down (retried, reported
by /healthz, never a 5xx), `flask mail test`, and the settings' checks."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import csrf_token, wait_until
from support.ports import free_port
from support.smtp import (
    Credentials,
    SmtpServer,
    link_in,
    plain_text,
    server_tls,
    smtp_server,
    throwaway_certificate,
)

from webapp import config, create_app, mail


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail, "RETRY_FIRST_DELAY", 0.05)
    monkeypatch.setattr(mail, "RETRY_MAX_DELAY", 0.2)


def test_file_outbox_writes_one_eml_per_message_and_logs_its_name(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with app.app_context(), caplog.at_level("INFO", "webapp.mail"):
        message = mail.compose("bob@example.com", "Hi", ["Hello."], mail.link("recovery.forgot"))
        mail.send(message)
    outbox = Path(app.instance_path) / "outbox"
    files = list(outbox.glob("*.eml"))
    assert len(files) == 1
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert any(str(files[0]) in record.getMessage() for record in caplog.records)
    text = files[0].read_text()
    assert "To: bob@example.com" in text
    assert "\nhttp://127.0.0.1:8000/password/forgot\n" in text.replace("\r\n", "\n")


def test_messages_have_a_plain_text_part_with_the_link_alone_and_an_html_part(
    app: Flask,
) -> None:
    with app.app_context():
        message = mail.compose("a@example.com", "S", ["One.", "Two <b>"], "https://x.example/p?a=1")
    assert link_in(message) == "https://x.example/p?a=1"
    html = message.get_body(("html",))
    assert html is not None
    content = html.get_content()  # type: ignore[attr-defined]
    assert '<a href="https://x.example/p?a=1">' in content
    assert "Two &lt;b&gt;" in content
    assert "One." in plain_text(message)


def test_links_come_from_base_url_never_from_the_host_header(
    app_config: dict[str, object],
) -> None:
    app = create_app(
        {**app_config, "BASE_URL": "https://accounts.example.org", "TRUSTED_HOSTS": "evil.example"}
    )
    client = app.test_client()
    with app.app_context():
        from webapp.db import get_db
        from webapp.users import create_user

        create_user(get_db(), "alice", "correct horse battery", email="alice@example.com")
    token = csrf_token_for(client, "evil.example")
    response = client.post(
        "/password/forgot",
        data={"email": "alice@example.com", "csrf_token": token},
        base_url="http://evil.example",
    )
    assert response.status_code == 200
    mail.settle(app)
    (eml,) = (Path(app.instance_path) / "outbox").glob("*.eml")
    text = eml.read_text().replace("\r\n", "\n")
    assert "\nhttps://accounts.example.org/password/reset/" in text
    assert "evil.example" not in text


def csrf_token_for(client: FlaskClient, host: str) -> str:
    page = client.get("/password/forgot", base_url=f"http://{host}").get_data(as_text=True)
    marker = 'name="csrf-token" content="'
    return page.split(marker, 1)[1].split('"', 1)[0]


def test_smtp_delivers_in_the_background(app_config: dict[str, object], smtp: SmtpServer) -> None:
    app = create_app({**app_config, "MAIL_URL": smtp.url})
    with app.app_context():
        mail.send(mail.compose("bob@example.com", "Hello", ["Hi Bob."], "https://x.example/"))
    (received,) = smtp.inbox.wait(1)
    assert received["To"] == "bob@example.com"
    assert received["From"] == "webapp@localhost"
    wait_until(lambda: mail.outbox(app).pending_names() == [])
    assert mail.outbox(app).health() == "ok"


def test_a_server_that_is_down_gets_retries_healthz_says_so_and_nothing_fails(
    app_config: dict[str, object], quick_retries: None
) -> None:
    port = free_port()
    app = create_app({**app_config, "MAIL_URL": f"smtp://127.0.0.1:{port}"})
    client = app.test_client()
    with app.app_context():
        from webapp.db import get_db
        from webapp.users import create_user

        create_user(get_db(), "alice", "correct horse battery", email="alice@example.com")
    response = client.post(
        "/password/forgot",
        data={"email": "alice@example.com", "csrf_token": csrf_token(client, "/password/forgot")},
    )
    assert response.status_code == 200
    box = mail.outbox(app)
    wait_until(lambda: box.health().startswith("failing"))
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json["checks"]["mail"].startswith("failing: 1 pending, last error")
    assert "ConnectionRefusedError" in health.json["checks"]["mail"]
    with smtp_server(port=port) as server:  # the server comes back: the next retry delivers
        (received,) = server.inbox.wait(1)
        assert "/password/reset/" in link_in(received)
        wait_until(lambda: box.health() == "ok")
    assert client.get("/healthz").json["checks"]["mail"] == "ok"


def test_a_message_never_sent_is_given_up_after_max_age(
    app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app({**app_config, "MAIL_URL": f"smtp://127.0.0.1:{free_port()}"})
    box = mail.outbox(app)
    monkeypatch.setattr(box, "wake", lambda: None)  # no background sender: this test sends
    with app.app_context():
        name = box.put(mail.compose("bob@example.com", "Hi", ["Hi."]))
    old = time.time() - mail.MAX_AGE - 10
    os.utime(os.path.join(box.pending, name), (old, old))
    assert box.deliver_pending() == 1
    assert box.pending_names() == []
    assert os.listdir(box.failed) == [name]


def test_mail_test_command_sends_through_starttls_with_a_login(
    app_config: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = throwaway_certificate(tmp_path)
    with smtp_server(tls=server_tls(cert, key), credentials=Credentials("mailer", "s3cret")) as s:
        url = f"smtp+starttls://mailer:s3cret@127.0.0.1:{s.port}"
        app = create_app({**app_config, "MAIL_URL": url})
        runner = app.test_cli_runner()
        untrusted = runner.invoke(args=["mail", "test", "ops@example.com"])
        assert untrusted.exit_code == 1
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.output
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the throwaway authority, trusted
        result = runner.invoke(args=["mail", "test", "ops@example.com"])
        assert result.exit_code == 0, result.output
        assert "Sent to ops@example.com through smtp+starttls://127.0.0.1" in result.output
        (received,) = s.inbox.wait(1)
        assert received["Subject"] == "webapp mail test"
        wrong = create_app({**app_config, "MAIL_URL": url.replace("s3cret", "nope")})
        refused = wrong.test_cli_runner().invoke(args=["mail", "test", "ops@example.com"])
        assert refused.exit_code == 1
        assert "SMTPAuthenticationError" in refused.output


def test_starttls_is_used_by_the_background_sender(
    app_config: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = throwaway_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with smtp_server(tls=server_tls(cert, key), credentials=Credentials("u", "p")) as server:
        app = create_app({**app_config, "MAIL_URL": f"smtp+starttls://u:p@127.0.0.1:{server.port}"})
        with app.app_context():
            mail.send(mail.compose("bob@example.com", "Over TLS", ["Hi."]))
        (received,) = server.inbox.wait(1)
        assert received["Subject"] == "Over TLS"


def test_smtps_speaks_tls_from_the_start(
    app_config: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = throwaway_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = server_tls(cert, key)
    with smtp_server(implicit_tls=tls, credentials=Credentials("u", "p")) as server:
        app = create_app({**app_config, "MAIL_URL": f"smtps://u:p@127.0.0.1:{server.port}"})
        result = app.test_cli_runner().invoke(args=["mail", "test", "ops@example.com"])
        assert result.exit_code == 0, result.output
        (received,) = server.inbox.wait(1)
        assert received["To"] == "ops@example.com"


def test_mail_test_command_reports_a_server_that_is_down(app_config: dict[str, object]) -> None:
    app = create_app({**app_config, "MAIL_URL": f"smtp://127.0.0.1:{free_port()}"})
    result = app.test_cli_runner().invoke(args=["mail", "test", "ops@example.com"])
    assert result.exit_code == 1
    assert "not sent through smtp://127.0.0.1" in result.output


def test_mail_test_command_writes_to_the_outbox_by_default(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["mail", "test", "ops@example.com"])
    assert result.exit_code == 0
    assert "Written to " in result.output
    assert len(list((Path(app.instance_path) / "outbox").glob("*.eml"))) == 1


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAIL_URL", "imap://mail.example", "must be file, or smtp://"),
        ("MAIL_URL", "smtp://", "must be file, or smtp://"),
        ("MAIL_URL", "smtp://host:port", "must be file, or smtp://"),
        ("MAIL_FROM", "nobody", "must be an email address"),
        ("BASE_URL", "example.com", "must be the site's address"),
        ("BASE_URL", "https://example.com/app", "must be the site's address"),
        ("RESET_TIMEOUT", "0", "positive whole number of seconds"),
    ],
)
def test_bad_mail_settings_are_refused_at_start(name: str, value: str, message: str) -> None:
    given = config.from_environment({f"WEBAPP_{name}": value})
    with pytest.raises(config.ConfigError, match=message):
        config.validate({**config.defaults(), **given})
