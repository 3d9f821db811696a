"""The shop with a helpful cart: it says how far the shopper is from free shipping.

Same catalogue, same prices, same shipping rule and totals as the mainline.
What differs is what the cart tells the shopper: the free-shipping
threshold, how much is missing to reach it, and one suggested product that
would close the gap (the cheapest one in stock that does).  Whether that
helps is for the shoppers to decide; this service only informs them.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    FREE_SHIPPING_THRESHOLD_CENTS,
    MAX_QTY_PER_LINE,
    PAGE_SIZE,
    revenue_header,
    serve,
    shipping_for,
)

CONN = web.AppKey("conn", sqlite3.Connection)

SELECT_PRODUCT = (
    "SELECT p.id, p.name, c.name, p.price_cents, p.stock, p.weight_grams, p.description "
    "FROM products AS p INNER JOIN categories AS c ON p.category_id = c.id"
)


def bad_request(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


def as_listing(row: tuple) -> dict:
    pid, name, category, price, stock = row[:5]
    return {"id": pid, "name": name, "category": category, "price_cents": price, "stock": stock}


def gap_filler(conn: sqlite3.Connection, missing_cents: int, exclude: list[int]) -> dict | None:
    """The cheapest product in stock, not already in the cart, that reaches free shipping on its own."""
    marks = ",".join("?" * len(exclude)) or "NULL"
    row = conn.execute(
        f"SELECT id, name, price_cents FROM products WHERE price_cents >= ? AND stock > 0 "
        f"AND id NOT IN ({marks}) ORDER BY price_cents, id LIMIT 1",
        (missing_cents, *exclude),
    ).fetchone()
    if row is None:
        return None
    return {"id": row[0], "name": row[1], "price_cents": row[2]}


def build_cart(conn: sqlite3.Connection, user: str, suggest: bool = True) -> dict:
    lines = conn.execute(
        "SELECT ci.product, p.name, ci.qty, p.price_cents FROM cart_items AS ci "
        "INNER JOIN products AS p ON p.id = ci.product WHERE ci.user = ? ORDER BY ci.product",
        (user,),
    ).fetchall()
    items, subtotal, count = [], 0, 0
    for pid, name, qty, price in lines:
        items.append({"product": pid, "name": name, "qty": qty, "price_cents": price, "line_cents": qty * price})
        subtotal += qty * price
        count += qty
    shipping = shipping_for(subtotal)
    cart = {
        "user": user,
        "items": items,
        "count": count,
        "subtotal_cents": subtotal,
        "shipping_cents": shipping,
        "total_cents": subtotal + shipping,
        "free_shipping_threshold_cents": FREE_SHIPPING_THRESHOLD_CENTS,
        "free_shipping_missing_cents": max(0, FREE_SHIPPING_THRESHOLD_CENTS - subtotal) if items else None,
        "recommendation": None,
    }
    if suggest and items and shipping > 0:
        cart["recommendation"] = gap_filler(
            conn, FREE_SHIPPING_THRESHOLD_CENTS - subtotal, [i["product"] for i in items]
        )
    return cart


async def healthz(request: web.Request) -> web.Response:
    request.app[CONN].execute("SELECT 1")
    return web.json_response({"status": "ok"})


async def catalogue_page(request: web.Request) -> web.Response:
    try:
        page = int(request.query.get("page", "1"))
    except ValueError:
        return bad_request("page must be an integer")
    if page < 1:
        return bad_request("page must be >= 1")
    conn = request.app[CONN]
    total = conn.execute("SELECT COUNT(*) FROM products").fetchone()[0]
    rows = conn.execute(f"{SELECT_PRODUCT} ORDER BY p.id LIMIT ? OFFSET ?", (PAGE_SIZE, PAGE_SIZE * (page - 1)))
    return web.json_response({"page": page, "per_page": PAGE_SIZE, "total": total, "pages": -(-total // PAGE_SIZE),
                              "products": [as_listing(r) for r in rows]})  # fmt: skip


async def product_detail(request: web.Request) -> web.Response:
    pid = int(request.match_info["pid"])
    row = request.app[CONN].execute(f"{SELECT_PRODUCT} WHERE p.id = ?", (pid,)).fetchone()
    if row is None:
        return bad_request(f"no product {pid}", 404)
    return web.json_response({**as_listing(row), "weight_grams": row[5], "description": row[6]})


async def put_in_cart(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    try:
        body = await request.json()
    except ValueError:
        return bad_request("body is not JSON")
    pid = body.get("product") if isinstance(body, dict) else None
    qty = body.get("qty", 1) if isinstance(body, dict) else None
    if type(pid) is not int or type(qty) is not int or not 1 <= qty <= MAX_QTY_PER_LINE:
        return bad_request(f'expected {{"product": <id>, "qty": 1..{MAX_QTY_PER_LINE}}}')
    conn = request.app[CONN]
    stock = conn.execute("SELECT stock FROM products WHERE id = ?", (pid,)).fetchone()
    if stock is None:
        return bad_request(f"no product {pid}", 404)
    have = conn.execute("SELECT qty FROM cart_items WHERE user = ? AND product = ?", (user, pid)).fetchone()
    qty += have[0] if have else 0
    if qty > MAX_QTY_PER_LINE:
        return bad_request(f"at most {MAX_QTY_PER_LINE} of one product per cart", 409)
    if qty > stock[0]:
        return bad_request(f"only {stock[0]} of product {pid} in stock", 409)
    conn.execute(
        "INSERT INTO cart_items (user, product, qty) VALUES (?, ?, ?) "
        "ON CONFLICT (user, product) DO UPDATE SET qty = excluded.qty",
        (user, pid, qty),
    )
    return web.json_response({"user": user, "product": pid, "qty": qty})


async def show_cart(request: web.Request) -> web.Response:
    return web.json_response(build_cart(request.app[CONN], request.match_info["user"]))


async def checkout(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    conn = request.app[CONN]
    conn.execute("BEGIN IMMEDIATE")
    try:
        cart = build_cart(conn, user, suggest=False)
        if not cart["items"]:
            conn.execute("ROLLBACK")
            return bad_request("cart is empty", 409)
        for item in cart["items"]:
            if (
                conn.execute(
                    "UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?",
                    (item["qty"], item["product"], item["qty"]),
                ).rowcount
                != 1
            ):
                conn.execute("ROLLBACK")
                return bad_request(f"product {item['product']} is out of stock", 409)
        order_id = conn.execute(
            "INSERT INTO orders (user, subtotal_cents, shipping_cents, total_cents, created_at) VALUES (?, ?, ?, ?, ?)",
            (user, cart["subtotal_cents"], cart["shipping_cents"], cart["total_cents"], time.time()),
        ).lastrowid
        conn.executemany(
            "INSERT INTO order_items (order_id, product, qty, price_cents) VALUES (?, ?, ?, ?)",
            [(order_id, i["product"], i["qty"], i["price_cents"]) for i in cart["items"]],
        )
        conn.execute("DELETE FROM cart_items WHERE user = ?", (user,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return web.json_response(
        {
            "order": order_id,
            "user": user,
            "count": cart["count"],
            "subtotal_cents": cart["subtotal_cents"],
            "shipping_cents": cart["shipping_cents"],
            "total_cents": cart["total_cents"],
            "free_shipping": cart["shipping_cents"] == 0,
        },  # fmt: skip
        status=201,
        headers=revenue_header(cart["total_cents"]),
    )


def make_app(db: sqlite3.Connection) -> web.Application:
    app = web.Application()
    app[CONN] = db
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/products", catalogue_page)
    app.router.add_get(r"/products/{pid:\d+}", product_detail)
    app.router.add_post("/cart/{user}/items", put_in_cart)
    app.router.add_get("/cart/{user}", show_cart)
    app.router.add_post("/checkout/{user}", checkout)
    return app


if __name__ == "__main__":
    serve("The shop whose cart shows the way to free shipping.", make_app)
