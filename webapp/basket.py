"""Blueprint: /basket, a shopping basket of demo products kept in the session.

An anonymous visitor who adds nothing stays out of the session store; the first line added makes
an anonymous store entry (session_policy.ANONYMOUS_LIFETIME after its last change), bounded to
MAX_LINES lines of at most MAX_QUANTITY each. Signing in keeps the basket (on the new session id:
session_policy.CARRIED_ACROSS_SIGN_IN); signing out empties it with the session.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flask import Blueprint, Response, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from .sessions import policy as session_policy

bp = Blueprint("basket", __name__)


class Product(NamedTuple):
    sku: str
    name: str
    price: str


#: The demo catalogue shown on /basket.
CATALOGUE = {
    product.sku: product
    for product in (
        Product("tea", "Green tea, 100 g", "4.50"),
        Product("mug", "Enamel mug", "9.00"),
        Product("socks", "Wool socks", "12.00"),
        Product("notebook", "Squared notebook", "6.00"),
        Product("pencil", "Pencil, 2B", "1.20"),
        Product("candle", "Beeswax candle", "7.50"),
    )
}
#: Different products a basket may hold (fewer than the catalogue: the limit shows).
MAX_LINES = 5
#: The most of one product in a basket, and in one request.
MAX_QUANTITY = 99


class BasketError(ValueError):
    """What is wrong with a basket request, in words for the visitor."""


def lines() -> dict[str, int]:
    """This session's basket, products still in the catalogue only."""
    return {
        sku: min(quantity, MAX_QUANTITY)
        for sku, quantity in session_policy.basket_lines().items()
        if sku in CATALOGUE
    }


def as_json(basket: dict[str, int]) -> dict[str, Any]:
    items = [
        {"sku": sku, "name": CATALOGUE[sku].name, "quantity": quantity}
        for sku, quantity in basket.items()
    ]
    return {"items": items, "count": sum(basket.values())}


def _save(basket: dict[str, int]) -> None:
    if basket:
        session[session_policy.BASKET] = basket
    else:
        session.pop(session_policy.BASKET, None)  # an empty basket needs no store entry


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _added(form: Any, basket: dict[str, int]) -> dict[str, int]:
    """The basket with the form's line added; BasketError when the form asks for too much."""
    sku = form.get("sku", "")
    if sku not in CATALOGUE:
        raise BasketError("There is no such product.")
    try:
        quantity = int(form.get("quantity", "1"))
    except ValueError:
        raise BasketError("The quantity must be a whole number from 1 to 99.") from None
    if not 1 <= quantity <= MAX_QUANTITY:
        raise BasketError(f"The quantity must be a whole number from 1 to {MAX_QUANTITY}.")
    if sku not in basket and len(basket) >= MAX_LINES:
        raise BasketError(f"A basket holds at most {MAX_LINES} different products.")
    if basket.get(sku, 0) + quantity > MAX_QUANTITY:
        raise BasketError(f"A basket holds at most {MAX_QUANTITY} of one product.")
    return {**basket, sku: basket.get(sku, 0) + quantity}


def _page(basket: dict[str, int], error: str | None = None) -> str:
    return render_template(
        "basket/basket.html", basket=basket, catalogue=CATALOGUE, error=error, limit=MAX_LINES
    )


def _answer(basket: dict[str, int]) -> ResponseReturnValue:
    if _wants_json():
        return jsonify(as_json(basket))
    return redirect(url_for("basket.show"), 303)


@bp.get("/basket")
def show() -> ResponseReturnValue:
    basket = lines()
    if _wants_json():
        response: Response = jsonify(as_json(basket))
    else:
        response = Response(_page(basket))
    response.vary.add("Accept")
    return response


@bp.post("/basket/items")
def add() -> ResponseReturnValue:
    """Add a line (or more of one): 400 with a message, the basket unchanged, when refused."""
    basket = lines()
    try:
        basket = _added(request.form, basket)
    except BasketError as error:
        if _wants_json():
            return jsonify(error=str(error)), 400
        return _page(basket, str(error)), 400
    _save(basket)
    return _answer(basket)


@bp.post("/basket/items/<sku>/remove")
def remove(sku: str) -> ResponseReturnValue:
    basket = lines()
    if sku not in CATALOGUE:
        message = "There is no such product."
        if _wants_json():
            return jsonify(error=message), 400
        return _page(basket, message), 400
    if sku in basket:
        _save({key: value for key, value in basket.items() if key != sku})
        basket = lines()
    return _answer(basket)


@bp.app_context_processor
def basket_context() -> dict[str, object]:
    return {"basket_count": lambda: sum(lines().values())}
