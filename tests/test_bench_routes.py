"""The benchmark-only routes exist only when asked for, and count what they claim to."""

from __future__ import annotations

from helpers import AuthActions


def test_bench_routes_are_off_by_default(client):
    assert client.get("/__bench/bare").status_code == 404


def test_bench_counters_count_store_writes_and_queries(app_config, clock):
    from helpers import PASSWORD

    from webapp import bench, create_app
    from webapp.accounts import create_user
    from webapp.db import get_db

    app = create_app({**app_config, "BENCHMARK": True})
    with app.app_context():
        create_user(get_db(), "alice", PASSWORD)
    client = app.test_client()
    assert client.get("/__bench/bare").json == {"message": "hello"}
    AuthActions(client).login()
    assert bench.COUNTS["store_writes"] >= 1 and bench.COUNTS["db_writes"] >= 1
    client.post("/__bench/counts/reset")
    client.get("/session")
    counts = client.get("/__bench/counts").json
    assert counts["store_writes"] == 0 and counts["db_writes"] == 0
