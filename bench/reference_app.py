"""What `make bench` compares the /session poll with: the same poll (a signed-in user asks for
the session's user as JSON) in a Flask app set up the way Flask-Login's and Flask-Session's
documentation set them up, and Flask's tutorial keeps its database:

- Flask-Session's cachelib store on files (`SESSION_TYPE = "cachelib"`, a `FileSystemCache`
  with threshold 500, as in its configuration docs), permanent sessions refreshed on every
  request (Flask's default `SESSION_REFRESH_EACH_REQUEST`): each poll rewrites the session
  file and sends its cookie again;
- Flask-Login's `user_loader` reading the user from SQLite on every request, through a
  connection per request on `g` (Flask's tutorial, `get_db`).

Benchmark-only: it lives beside the bench, never in the webapp package. `prepare(folder, ...)`
makes the user database and the secret key once; gunicorn then serves
`--pythonpath bench 'reference_app:create_app("FOLDER")'`.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Any

from cachelib.file import FileSystemCache
from flask import Flask, current_app, g, redirect, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from flask_session import Session
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

DATABASE = "users.db"
SECRET_KEY = "secret_key"
SESSIONS = "sessions"


class User(UserMixin):
    def __init__(self, user_id: int, username: str) -> None:
        self.id, self.username = user_id, username


def prepare(folder: Path, username: str, password: str) -> None:
    """The user database with one user, and the secret key all workers share."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SECRET_KEY).write_text(secrets.token_hex(32))
    with sqlite3.connect(folder / DATABASE) as db:
        db.execute("CREATE TABLE user (id INTEGER PRIMARY KEY, username TEXT, password TEXT)")
        db.execute(
            "INSERT INTO user (username, password) VALUES (?, ?)",
            (username, generate_password_hash(password)),
        )


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"])
        g.db.row_factory = sqlite3.Row
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    if (db := g.pop("db", None)) is not None:
        db.close()


def load_user(user_id: str) -> User | None:
    row = get_db().execute("SELECT id, username FROM user WHERE id = ?", (user_id,)).fetchone()
    return User(row["id"], row["username"]) if row else None


def create_app(folder: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        DATABASE=str(Path(folder) / DATABASE),
        SECRET_KEY=(Path(folder) / SECRET_KEY).read_text(),
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(cache_dir=str(Path(folder) / SESSIONS), threshold=500),
    )
    Session(app)
    login_manager = LoginManager(app)
    login_manager.user_loader(load_user)
    app.teardown_appcontext(close_db)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "GET":
            return "<form method=post><input name=username><input name=password></form>"
        row = (
            get_db()
            .execute("SELECT * FROM user WHERE username = ?", (request.form["username"],))
            .fetchone()
        )
        if row is None or not check_password_hash(row["password"], request.form["password"]):
            return "wrong username or password", 401
        login_user(User(row["id"], row["username"]))
        return redirect("/session", 303)

    @app.get("/session")
    @login_required
    def session_user() -> Response | dict[str, Any]:
        return {"user": {"id": current_user.id, "username": current_user.username}}

    return app
