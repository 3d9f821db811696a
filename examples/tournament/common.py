"""What every implementation of the tournament's catalogue service shares: the data, the checkout's
rules, the conversion each build reports, and the command line.

The service: ``GET /items[?category=C]`` (a page of the catalogue), ``GET /items/{id}`` (one item),
``POST /checkout`` with ``{"item": ID, "qty": N}`` (an order: the answer says whether the customer
completed it), ``GET /healthz``.  A checkout reports ``Bakeoff-Metric-conversion: 1`` when the order
completed and ``0`` when the customer gave up, the way examples/shop reports its business metric.

Whether a customer completes a checkout is simulated: each build's checkout flow completes with its
own probability (COMPLETION below), drawn per request, because this example has no real customers.
"""

from __future__ import annotations

import argparse
import json
import random

CATEGORIES = ("tea", "coffee", "cocoa", "spice")
ITEMS = 200
PAGE = 20

# The share of checkouts a flow completes: what the judge's objective measures.
COMPLETION = {"standard": 0.30, "one-page": 0.55, "confirm-twice": 0.12}


def catalogue() -> list[dict]:
    """The same 200 items for every implementation (deterministic)."""
    rng = random.Random(19)
    return [
        {
            "id": i + 1,
            "name": f"{CATEGORIES[i % len(CATEGORIES)]} no. {i + 1}",
            "category": CATEGORIES[i % len(CATEGORIES)],
            "price_cents": 100 + rng.randrange(5000),
        }
        for i in range(ITEMS)
    ]


def page_of(items: list[dict], category: str | None) -> dict:
    found = [it for it in items if category is None or it["category"] == category]
    return {"count": len(found), "items": found[:PAGE]}


def parse_order(body: bytes) -> tuple[int, int] | str:
    """(item id, quantity) of a POST /checkout body, or the reason it is not an order (a 400)."""
    try:
        order = json.loads(body or b"null")
    except ValueError:
        return "body must be JSON"
    if not isinstance(order, dict):
        return "body must be a JSON object"
    item, qty = order.get("item"), order.get("qty", 1)
    if not isinstance(item, int) or not 1 <= item <= ITEMS or not isinstance(qty, int) or not 1 <= qty <= 99:
        return f"item (1 to {ITEMS}) and qty (1 to 99) are required"
    return item, qty


def checkout(items_by_id: dict[int, dict], item: int, qty: int, flow: str, rng: random.Random) -> tuple[dict, dict]:
    """(the answer, its headers) of an order through checkout ``flow``; the header reports the conversion."""
    completed = rng.random() < COMPLETION[flow]
    total = items_by_id[item]["price_cents"] * qty
    answer = {"item": item, "qty": qty, "total_cents": total, "completed": completed}
    return answer, {"Bakeoff-Metric-conversion": "1" if completed else "0"}


def args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    return p.parse_args()
