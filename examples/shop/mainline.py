"""The mainline shop: the reference implementation.

Straightforward SQL per request: one JOIN for a page of products, one for a
cart, one transaction for a checkout.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import MAX_QTY_PER_LINE, PAGE_SIZE, revenue_header, serve, shipping_for  # noqa: E402

DB = web.AppKey("db", sqlite3.Connection)

PRODUCT_COLUMNS = """
    p.id, p.name, c.name AS category, p.price_cents, p.stock, p.weight_grams, p.description
    FROM products p JOIN categories c ON c.id = p.category_id
"""


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def summary(row: tuple) -> dict:
    return {"id": row[0], "name": row[1], "category": row[2], "price_cents": row[3], "stock": row[4]}


def detail(row: tuple) -> dict:
    return {**summary(row), "weight_grams": row[5], "description": row[6]}


async def healthz(request: web.Request) -> web.Response:
    request.app[DB].execute("SELECT 1").fetchone()
    return web.json_response({"status": "ok"})


async def list_products(request: web.Request) -> web.Response:
    try:
        page = int(request.query.get("page", "1"))
    except ValueError:
        return error(400, "page must be an integer")
    if page < 1:
        return error(400, "page must be >= 1")
    db = request.app[DB]
    (total,) = db.execute("SELECT COUNT(*) FROM products").fetchone()
    rows = db.execute(
        f"SELECT {PRODUCT_COLUMNS} ORDER BY p.id LIMIT ? OFFSET ?", (PAGE_SIZE, (page - 1) * PAGE_SIZE)
    ).fetchall()
    return web.json_response(
        {
            "page": page,
            "per_page": PAGE_SIZE,
            "total": total,
            "pages": -(-total // PAGE_SIZE),
            "products": [summary(r) for r in rows],
        }
    )


async def get_product(request: web.Request) -> web.Response:
    pid = int(request.match_info["pid"])
    row = request.app[DB].execute(f"SELECT {PRODUCT_COLUMNS} WHERE p.id = ?", (pid,)).fetchone()
    if row is None:
        return error(404, f"no product {pid}")
    return web.json_response(detail(row))


def read_cart(db: sqlite3.Connection, user: str) -> dict:
    rows = db.execute(
        """SELECT p.id, p.name, ci.qty, p.price_cents
           FROM cart_items ci JOIN products p ON p.id = ci.product
           WHERE ci.user = ? ORDER BY p.id""",
        (user,),
    ).fetchall()
    items = [
        {"product": pid, "name": name, "qty": qty, "price_cents": price, "line_cents": qty * price}
        for pid, name, qty, price in rows
    ]
    subtotal = sum(i["line_cents"] for i in items)
    shipping = shipping_for(subtotal)
    return {
        "user": user,
        "items": items,
        "count": sum(i["qty"] for i in items),
        "subtotal_cents": subtotal,
        "shipping_cents": shipping,
        "total_cents": subtotal + shipping,
    }


async def add_to_cart(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    try:
        body = await request.json()
        pid, qty = body["product"], body.get("qty", 1)
    except (ValueError, KeyError, TypeError, AttributeError):
        return error(400, 'expected {"product": <id>, "qty": <n>}')
    if type(pid) is not int or type(qty) is not int or not 1 <= qty <= MAX_QTY_PER_LINE:
        return error(400, f"product must be an integer id and qty an integer in 1..{MAX_QTY_PER_LINE}")
    db = request.app[DB]
    product = db.execute("SELECT stock FROM products WHERE id = ?", (pid,)).fetchone()
    if product is None:
        return error(404, f"no product {pid}")
    in_cart = db.execute("SELECT qty FROM cart_items WHERE user = ? AND product = ?", (user, pid)).fetchone()
    new_qty = qty + (in_cart[0] if in_cart else 0)
    if new_qty > MAX_QTY_PER_LINE:
        return error(409, f"at most {MAX_QTY_PER_LINE} of one product per cart")
    if new_qty > product[0]:
        return error(409, f"only {product[0]} of product {pid} in stock")
    db.execute(
        "INSERT INTO cart_items (user, product, qty) VALUES (?, ?, ?) "
        "ON CONFLICT (user, product) DO UPDATE SET qty = excluded.qty",
        (user, pid, new_qty),
    )
    return web.json_response({"user": user, "product": pid, "qty": new_qty})


async def view_cart(request: web.Request) -> web.Response:
    return web.json_response(read_cart(request.app[DB], request.match_info["user"]))


async def checkout(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    db = request.app[DB]
    db.execute("BEGIN IMMEDIATE")
    try:
        cart = read_cart(db, user)
        if not cart["items"]:
            db.execute("ROLLBACK")
            return error(409, "cart is empty")
        for item in cart["items"]:
            updated = db.execute(
                "UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?",
                (item["qty"], item["product"], item["qty"]),
            ).rowcount
            if not updated:
                db.execute("ROLLBACK")
                return error(409, f"product {item['product']} is out of stock")
        order_id = db.execute(
            "INSERT INTO orders (user, subtotal_cents, shipping_cents, total_cents, created_at) VALUES (?, ?, ?, ?, ?)",
            (user, cart["subtotal_cents"], cart["shipping_cents"], cart["total_cents"], time.time()),
        ).lastrowid
        db.executemany(
            "INSERT INTO order_items (order_id, product, qty, price_cents) VALUES (?, ?, ?, ?)",
            [(order_id, i["product"], i["qty"], i["price_cents"]) for i in cart["items"]],
        )
        db.execute("DELETE FROM cart_items WHERE user = ?", (user,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return web.json_response(
        {
            "order": order_id,
            "user": user,
            "count": cart["count"],
            "subtotal_cents": cart["subtotal_cents"],
            "shipping_cents": cart["shipping_cents"],
            "total_cents": cart["total_cents"],
        },
        status=201,
        headers=revenue_header(cart["total_cents"]),
    )


def make_app(db: sqlite3.Connection) -> web.Application:
    app = web.Application()
    app[DB] = db
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/products", list_products)
    app.router.add_get(r"/products/{pid:\d+}", get_product)
    app.router.add_post("/cart/{user}/items", add_to_cart)
    app.router.add_get("/cart/{user}", view_cart)
    app.router.add_post("/checkout/{user}", checkout)
    return app


if __name__ == "__main__":
    serve("The mainline shop (reference implementation).", make_app)
