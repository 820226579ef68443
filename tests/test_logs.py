"""webapp's log lines: one JSON object per line (python-json-logger), an event's fields as the
object's own keys; the command line writes them too."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from helpers import PASSWORD

from webapp import create_app, events

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def lines_of(caplog, logger: str) -> list[dict]:
    """The records of `logger` as webapp's handler writes them, each parsed as one line."""
    formatter = events.json_handler.formatter
    assert formatter is not None
    written = [formatter.format(r) for r in caplog.records if r.name == logger]
    assert all("\n" not in line for line in written)
    return [json.loads(line) for line in written]


def test_webapps_handler_takes_the_place_of_flasks_default(app_config, monkeypatch):
    webapp_logger = logging.getLogger("webapp")
    monkeypatch.setattr(logging.root, "handlers", [])  # nothing configured (pytest's removed)
    monkeypatch.setattr(webapp_logger, "handlers", [])
    app = create_app(app_config)
    assert app.logger is webapp_logger and app.logger.handlers == [events.json_handler]
    assert app.logger.getEffectiveLevel() == logging.INFO
    create_app(app_config)
    assert webapp_logger.handlers == [events.json_handler]  # one for every app


def test_a_logging_configuration_of_ones_own_is_left_alone(app):
    """Here pytest's: its handler on the root logger receives webapp's records."""
    assert app.logger.handlers == []


def test_an_events_fields_are_the_lines_own_keys(app, client, auth, user, caplog):
    caplog.set_level(logging.INFO, logger="webapp.events")
    auth.login()
    (line,) = lines_of(caplog, "webapp.events")
    assert line["event"] == "sign_in" and line["user_id"] == user.id
    assert line["level"] == "INFO" and line["logger"] == "webapp.events"
    assert len(line["session"]) == 12 and line["ip"] == "127.0.0.1"
    assert "message" not in line  # not JSON inside a text field
    assert line["time"].endswith("+00:00")


def test_other_lines_carry_their_message(app, caplog):
    caplog.set_level(logging.INFO, logger="webapp")
    app.logger.getChild("anything").warning("a %s message", "plain")
    (line,) = lines_of(caplog, "webapp.anything")
    assert (line["level"], line["message"]) == ("WARNING", "a plain message")


#: A second password: setting the current one again is refused.
NEW = "a different horse battery"


def test_the_command_line_writes_json_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBAPP_")}
    env["WEBAPP_INSTANCE_PATH"] = str(tmp_path / "instance")
    flask = [str(BIN / "flask"), "--app", "webapp", "users"]
    for command, password in ((["create", "bob"], PASSWORD), (["set-password", "bob"], NEW)):
        result = subprocess.run(
            [*flask, *command, "--password-stdin"],
            input=password + "\n",
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line.get("event") for line in lines] == ["password_changed"]
    assert lines[0]["via"] == "cli" and lines[0]["sessions_ended"] == 0
