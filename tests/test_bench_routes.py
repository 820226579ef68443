"""The bench's apps are what the report says: the counters (bench/counted_app.py) count what
they claim to, and the webapp package itself has no benchmark routes; the baseline
(bench/bare_app.py) is one JSON route and nothing else; the reference (bench/reference_app.py)
refreshes the session on every poll, as Flask-Session's documented setup does."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers import PASSWORD, AuthActions

from webapp.db import get_db
from webapp.users import create_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bare_app
import counted_app
import reference_app


def test_the_product_has_no_bench_routes(client):
    assert client.get("/__bench/bare").status_code == 404


def test_bench_counters_count_store_writes_and_queries(app_config, clock):
    app = counted_app.create_counted_app(app_config)
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()
    assert client.get("/__bench/bare").json == {"message": "hello"}
    AuthActions(client).login()
    assert counted_app.COUNTS["store_writes"] >= 1 and counted_app.COUNTS["db_writes"] >= 1
    client.post("/__bench/counts/reset")
    client.get("/session")
    counts = client.get("/__bench/counts").json
    assert counts["store_writes"] == 0 and counts["db_writes"] == 0


def test_the_bare_flask_app_is_one_json_route_and_nothing_else():
    app = bare_app.app
    assert [rule.rule for rule in app.url_map.iter_rules()] == ["/"]
    assert not app.extensions and not app.before_request_funcs and not app.after_request_funcs
    answer = app.test_client().get("/")
    assert answer.json == {"message": "hello"} and "Set-Cookie" not in answer.headers


def test_the_reference_app_rewrites_the_session_and_its_cookie_on_every_poll(tmp_path):
    reference_app.prepare(tmp_path, "bench", PASSWORD)
    client = reference_app.create_app(str(tmp_path)).test_client()
    assert client.get("/session").status_code == 401
    form = {"username": "bench", "password": PASSWORD}
    assert client.post("/login", data=form).status_code == 303
    stored = tmp_path / reference_app.SESSIONS

    def files() -> set[tuple[str, int, int]]:
        return {(f.name, f.stat().st_ino, f.stat().st_mtime_ns) for f in stored.iterdir()}

    for _ in range(2):
        before = files()
        answer = client.get("/session")
        assert answer.json == {"user": {"id": 1, "username": "bench"}}
        assert answer.headers["Set-Cookie"].startswith("session=")
        assert files() != before, "the poll did not rewrite the session file"
