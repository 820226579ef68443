"""`flask --app webapp users ...`: success and failure paths, messages and exit codes."""

from __future__ import annotations

import pytest
from helpers import PASSWORD, AuthActions

from webapp.db import get_db
from webapp.users import authenticate, find_user


def run(runner, *args, input=None):
    return runner.invoke(args=["users", *args], input=input)


def test_create_with_password_on_stdin(app, runner):
    result = run(
        runner,
        "create",
        "dave",
        "--name",
        "Dave D",
        "--email",
        "d@example.com",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = find_user(get_db(), "dave")
        assert (user.name, user.email) == ("Dave D", "d@example.com")
        assert authenticate(get_db(), "dave", PASSWORD) is not None


def test_create_name_defaults_to_the_username(app, runner):
    assert run(runner, "create", "erin", "--password-stdin", input=PASSWORD).exit_code == 0
    with app.app_context():
        assert find_user(get_db(), "erin").name == "erin"


def test_create_prompts_twice_hidden(app, runner):
    result = run(runner, "create", "frank", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "Password:" in result.output and "Repeat for confirmation:" in result.output


def test_create_prompt_mismatch_asks_again(app, runner):
    result = run(runner, "create", "gina", input=f"{PASSWORD}\nother password!!\n")
    assert result.exit_code != 0
    with app.app_context():
        assert find_user(get_db(), "gina") is None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["create", "alice"], PASSWORD, "is taken"),
        (["create", "ALICE"], PASSWORD, "is taken"),
        (["create", "bad name"], PASSWORD, "Username must be"),
        (["create", "hank"], "too short", "at least 12"),
        (["create", "hank"], "", "no password"),
        (["create", "hank", "--email", "nope"], PASSWORD, "Email must"),
        (["delete", "nobody"], None, "no such user"),
        (["set-password", "nobody"], PASSWORD, "no such user"),
        (["set-password", "alice"], "short", "at least 12"),
        (["create", "hank"], "1q2w3e4r5t6y", "one of the most common ones"),
        (["create", "hank"], "hankhank1234", "must not be your username"),
        (["set-password", "alice"], "Password1234", "one of the most common ones"),
        (["set-password", "alice"], "AliceAlice12", "must not be your username"),
        (["set-password", "alice"], PASSWORD, "That is already your password"),
    ],
)
def test_refusals_exit_non_zero_with_a_message(runner, user, args, stdin, message):
    if stdin is not None:
        args = [*args, "--password-stdin"]
    result = run(runner, *args, input=stdin)
    assert result.exit_code == 1
    assert message in result.output  # click's runner mixes stderr into output


def test_list_shows_users(runner, user):
    result = run(runner, "list")
    assert result.exit_code == 0
    assert "alice" in result.output and "Alice Example" in result.output


def test_list_with_no_users(runner):
    assert "No users yet." in run(runner, "list").output


def test_delete_removes_the_user_and_ends_their_sessions(app, runner, client, user):
    AuthActions(client).login()
    assert run(runner, "delete", "alice").exit_code == 0
    assert client.get("/session").json == {}
    with app.app_context():
        assert find_user(get_db(), "alice") is None


def test_set_password_changes_it_and_revokes_remember_tokens(app, runner, client, user):
    AuthActions(client).login(remember=True)
    remember = client.get_cookie("remember").value
    new = "a brand new passphrase"
    assert run(runner, "set-password", "alice", "--password-stdin", input=new).exit_code == 0
    with app.app_context():
        assert authenticate(get_db(), "alice", PASSWORD) is None
        assert authenticate(get_db(), "alice", new) is not None
    browser = app.test_client()
    browser.set_cookie("remember", remember)
    assert browser.get("/profile").status_code == 302


def test_password_from_stdin_keeps_spaces_and_drops_only_the_newline(app, runner):
    password = "  spaces at both ends  "
    assert run(runner, "create", "ivy", "--password-stdin", input=password + "\r\n").exit_code == 0
    with app.app_context():
        assert authenticate(get_db(), "ivy", password) is not None


def test_unreachable_database_is_a_clear_error(app, runner, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from webapp import users

    def down(*_args):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(users, "find_user", down)
    result = run(runner, "create", "jack", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 1
    assert "database unreachable" in result.output
