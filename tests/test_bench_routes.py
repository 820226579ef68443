"""The bench's counters (bench/counted_app.py) count what they claim to, and the webapp
package itself has no benchmark routes."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers import PASSWORD, AuthActions

from webapp.db import get_db
from webapp.users import create_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import counted_app


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
