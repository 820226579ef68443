"""/basket: demo products in the session; an anonymous basket is a short-lived store entry
created on the first line only, kept at sign-in (on a new id), emptied at sign-out, counted in
the widget's state so every tab's header follows it."""

from __future__ import annotations

import re
import struct
import time
from pathlib import Path

import pytest
from helpers import PASSWORD, AuthActions, csrf_token, session_cookie, store_files

from webapp import basket
from webapp.db import get_db
from webapp.sessions import policy as session_policy
from webapp.sessions import pruning
from webapp.sessions.store import MOVED_KEY
from webapp.users import create_user

JSON = {"Accept": "application/json"}
HTMX = {"HX-Request": "true"}


def add(client, sku: str, quantity: object = 1, headers=None):  # type: ignore[no-untyped-def]
    data = {"sku": sku, "quantity": str(quantity), "csrf_token": csrf_token(client)}
    return client.post("/basket/items", data=data, headers=headers or {})


def remove(client, sku: str):  # type: ignore[no-untyped-def]
    return client.post(f"/basket/items/{sku}/remove", data={"csrf_token": csrf_token(client)})


def contents(client) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return client.get("/basket", headers=JSON).json


def header_count(client, path: str = "/") -> int:  # type: ignore[no-untyped-def]
    match = re.search(r'<span id="basket-count">(\d+)</span>', client.get(path).text)
    assert match, "no basket count in the header"
    return int(match.group(1))


def widget_count(client) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    html = client.get("/session", headers=HTMX).text
    count = re.search(r'data-basket-count="(\d+)"', html)
    token = re.search(r'data-state="([^"]+)"', html)
    assert count and token
    return int(count[1]), token[1]


def test_empty_basket_page_and_json_and_nothing_stored(app, client):
    page = client.get("/basket")
    assert page.status_code == 200
    for product in basket.CATALOGUE.values():
        assert product.name in page.text
    assert contents(client) == {"items": [], "count": 0}
    assert header_count(client) == 0
    assert store_files(app) == {}


def test_add_creates_one_short_lived_anonymous_entry(app, client):
    response = add(client, "tea", 2)
    assert response.status_code == 303 and response.headers["Location"] == "/basket"
    add(client, "mug")
    assert contents(client) == {
        "items": [
            {"sku": "tea", "name": "Green tea, 100 g", "quantity": 2},
            {"sku": "mug", "name": "Enamel mug", "quantity": 1},
        ],
        "count": 3,
    }
    assert header_count(client) == 3
    (key,) = store_files(app)
    lifetime = session_policy.ANONYMOUS_LIFETIME
    if app.config["SESSION_BACKEND"] == "redis":
        ttl = app.session_interface.client.ttl(key)
    else:
        header = Path(app.instance_path, "sessions", key).read_bytes()[:4]
        ttl = struct.unpack("I", header)[0] - time.time()
    assert lifetime - 5 <= ttl <= lifetime + 1
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.expires is not None
    assert cookie.expires.timestamp() - time.time() > app.config["IDLE_TIMEOUT"]


def test_adding_more_of_a_product_adds_to_its_line(client):
    add(client, "tea", 2)
    add(client, "tea", 3)
    assert contents(client)["items"] == [{"sku": "tea", "name": "Green tea, 100 g", "quantity": 5}]


def test_json_clients_get_the_basket_back(client):
    response = add(client, "socks", 4, headers=JSON)
    assert response.status_code == 200
    assert response.json["count"] == 4


def test_reading_the_basket_writes_nothing(app, client):
    add(client, "tea")
    before = store_files(app)
    for path in ("/basket", "/", "/preferences"):
        assert "Set-Cookie" not in client.get(path).headers
    contents(client)
    assert store_files(app) == before


def fill(client, lines: int) -> None:  # type: ignore[no-untyped-def]
    for sku in list(basket.CATALOGUE)[:lines]:
        add(client, sku)


@pytest.mark.parametrize(
    ("sku", "quantity", "lines", "message"),
    [
        ("caviar", 1, 0, "There is no such product."),
        ("", 1, 0, "There is no such product."),
        ("tea", 0, 0, "The quantity must be a whole number from 1 to 99."),
        ("tea", 100, 0, "The quantity must be a whole number from 1 to 99."),
        ("tea", -1, 0, "The quantity must be a whole number from 1 to 99."),
        ("tea", "two", 0, "The quantity must be a whole number from 1 to 99."),
        ("tea", "1.5", 0, "The quantity must be a whole number from 1 to 99."),
        ("tea", 99, 1, "A basket holds at most 99 of one product."),
        ("candle", 1, basket.MAX_LINES, "A basket holds at most 5 different products."),
    ],
)
def test_bad_input_is_refused_and_nothing_changes(app, client, sku, quantity, lines, message):
    fill(client, lines)
    before, stored = contents(client), store_files(app)
    response = add(client, sku, quantity)
    assert response.status_code == 400
    assert message in response.text
    assert add(client, sku, quantity, headers=JSON).json == {"error": message}
    assert contents(client) == before
    assert store_files(app) == stored


def test_remove_a_line_and_the_last_one_leaves_no_entry(app, client):
    add(client, "tea", 2)
    add(client, "mug")
    assert remove(client, "tea").status_code == 303
    assert contents(client)["count"] == 1
    assert remove(client, "pencil").status_code == 303  # not in the basket: nothing to do
    remove(client, "mug")
    assert contents(client) == {"items": [], "count": 0}
    assert store_files(app) == {}
    assert session_cookie(client) is None


def test_removing_an_unknown_product_is_refused(client):
    add(client, "tea")
    response = remove(client, "caviar")
    assert response.status_code == 400 and "There is no such product." in response.text
    assert contents(client)["count"] == 1


@pytest.mark.parametrize("path", ["/basket/items", "/basket/items/tea/remove"])
def test_every_post_needs_the_csrf_token(client, path):
    add(client, "tea")
    response = client.post(path, data={"sku": "mug", "quantity": "1"})
    assert response.status_code == 400
    assert contents(client)["count"] == 1


def test_sign_in_keeps_the_basket_on_a_new_session_id(app, client, auth, user):
    add(client, "tea", 2)
    anonymous_sid = session_cookie(client)
    assert len(store_files(app)) == 1
    auth.login()
    assert session_cookie(client) not in (None, anonymous_sid)
    # The old id is dead: its entry holds only the short-lived "moved" marker.
    interface = app.session_interface
    old_entry = interface._retrieve_session_data(interface._get_store_id(anonymous_sid))
    assert old_entry == {MOVED_KEY: True}
    assert contents(client)["count"] == 2
    assert header_count(client, "/profile") == 2


def test_sign_out_empties_the_basket_for_the_next_person(app, client, auth, user):
    with app.app_context():
        create_user(get_db(), "bob", PASSWORD, "Bob")
    auth.login()
    add(client, "socks", 3)
    auth.logout()
    assert contents(client) == {"items": [], "count": 0}
    assert store_files(app) == {}
    AuthActions(client).login("bob")
    assert contents(client)["count"] == 0


def test_widget_state_follows_the_basket_in_both_poll_paths(app, client, auth, user):
    count, empty_token = widget_count(client)
    assert count == 0
    add(client, "tea", 2)
    count, token = widget_count(client)
    assert count == 2 and token != empty_token
    unchanged = {**HTMX, "X-Session-State": token}
    assert client.get("/session", headers=unchanged).status_code == 204
    fast = app.wsgi_app
    app.wsgi_app = fast.wsgi_app  # the Flask route, without the fast path
    try:
        assert client.get("/session", headers=unchanged).status_code == 204
        assert widget_count(client) == (2, token)
    finally:
        app.wsgi_app = fast
    auth.login()
    signed_in_count, _ = widget_count(client)
    assert signed_in_count == 2


def test_a_visitor_without_a_basket_keeps_the_state_token_of_before(client):
    """No basket, no `basket` key in the state: tokens that tabs already hold stay valid."""
    from webapp.widget import state as widget_state

    _, token = widget_count(client)
    assert token == widget_state.state_token({"status": widget_state.UNAUTHENTICATED})


@pytest.mark.filesystem_only
def test_expired_anonymous_baskets_are_swept_and_signed_in_sessions_stay(app, client, user):
    add(client, "tea")
    (basket_entry,) = store_files(app)
    AuthActions(app.test_client()).login()
    assert pruning.sweep_store(app) == 0
    path = Path(app.instance_path, "sessions", basket_entry)
    path.write_bytes(struct.pack("I", 1) + path.read_bytes()[4:])  # as a day later
    assert pruning.sweep_store(app) == 1
    remaining = store_files(app)
    assert basket_entry not in remaining and len(remaining) == 1
