"""The repository-pattern shop: tidy code, slow pages.

Each request opens its own SQLite connection, and every product is loaded
through ``ProductRepository.get`` -- which then looks its category up by id.
A page of 20 products therefore costs 1 + 2 x 20 queries and a cart of n
lines 1 + 2 x n: the classic N+1 pattern.  It returns exactly the same data as
the mainline; it is only slower, and the more so the busier the machine is.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import MAX_QTY_PER_LINE, PAGE_SIZE, revenue_header, serve, shipping_for  # noqa: E402

DB_PATH = web.AppKey("db_path", str)
WAL_HOLDER = web.AppKey("wal_holder", sqlite3.Connection)


@contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    try:
        yield conn
    finally:
        conn.close()


class ProductRepository:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def category_name(self, category_id: int) -> str:
        return self.conn.execute("SELECT name FROM categories WHERE id = ?", (category_id,)).fetchone()["name"]

    def get(self, product_id: int) -> Any:  # a product dict, None if unknown (callers checked the id)
        row = self.conn.execute("SELECT * FROM products WHERE id = ?", (product_id,)).fetchone()
        if row is None:
            return None
        return {
            "id": row["id"],
            "name": row["name"],
            "category": self.category_name(row["category_id"]),
            "price_cents": row["price_cents"],
            "stock": row["stock"],
            "weight_grams": row["weight_grams"],
            "description": row["description"],
        }

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) AS n FROM products").fetchone()["n"]

    def page_ids(self, page: int) -> list[int]:
        rows = self.conn.execute(
            "SELECT id FROM products ORDER BY id LIMIT ? OFFSET ?", (PAGE_SIZE, (page - 1) * PAGE_SIZE)
        )
        return [r["id"] for r in rows]


class CartRepository:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.products = ProductRepository(conn)

    def lines(self, user: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT product, qty FROM cart_items WHERE user = ? ORDER BY product", (user,)
        ).fetchall()

    def quantity(self, user: str, product_id: int) -> int:
        row = self.conn.execute(
            "SELECT qty FROM cart_items WHERE user = ? AND product = ?", (user, product_id)
        ).fetchone()
        return row["qty"] if row else 0

    def set_quantity(self, user: str, product_id: int, qty: int) -> None:
        self.conn.execute(
            "INSERT INTO cart_items (user, product, qty) VALUES (?, ?, ?) "
            "ON CONFLICT (user, product) DO UPDATE SET qty = excluded.qty",
            (user, product_id, qty),
        )

    def view(self, user: str) -> dict:
        items = []
        for line in self.lines(user):
            product = self.products.get(line["product"])
            items.append(
                {
                    "product": product["id"],
                    "name": product["name"],
                    "qty": line["qty"],
                    "price_cents": product["price_cents"],
                    "line_cents": line["qty"] * product["price_cents"],
                }
            )
        subtotal = sum(item["line_cents"] for item in items)
        shipping = shipping_for(subtotal)
        return {
            "user": user,
            "items": items,
            "count": sum(item["qty"] for item in items),
            "subtotal_cents": subtotal,
            "shipping_cents": shipping,
            "total_cents": subtotal + shipping,
        }

    def clear(self, user: str) -> None:
        self.conn.execute("DELETE FROM cart_items WHERE user = ?", (user,))


def problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def summary_of(product: dict) -> dict:
    return {k: product[k] for k in ("id", "name", "category", "price_cents", "stock")}


async def healthz(request: web.Request) -> web.Response:
    with connect(request.app[DB_PATH]) as conn:
        conn.execute("SELECT 1")
    return web.json_response({"status": "ok"})


async def list_products(request: web.Request) -> web.Response:
    try:
        page = int(request.query.get("page", 1))
    except ValueError:
        return problem(400, "page must be an integer")
    if page < 1:
        return problem(400, "page must be >= 1")
    with connect(request.app[DB_PATH]) as conn:
        repo = ProductRepository(conn)
        total = repo.count()
        products = [summary_of(repo.get(pid)) for pid in repo.page_ids(page)]
    return web.json_response(
        {"page": page, "per_page": PAGE_SIZE, "total": total, "pages": -(-total // PAGE_SIZE), "products": products}
    )


async def show_product(request: web.Request) -> web.Response:
    pid = int(request.match_info["pid"])
    with connect(request.app[DB_PATH]) as conn:
        product = ProductRepository(conn).get(pid)
    if product is None:
        return problem(404, f"no product {pid}")
    return web.json_response(product)


async def add_item(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    try:
        payload = await request.json()
        pid = payload["product"]
        qty = payload.get("qty", 1)
    except (ValueError, KeyError, TypeError, AttributeError):
        return problem(400, 'expected {"product": <id>, "qty": <n>}')
    if type(pid) is not int or type(qty) is not int or not 1 <= qty <= MAX_QTY_PER_LINE:
        return problem(400, f"product must be an integer id and qty an integer in 1..{MAX_QTY_PER_LINE}")
    with connect(request.app[DB_PATH]) as conn:
        carts = CartRepository(conn)
        product = carts.products.get(pid)
        if product is None:
            return problem(404, f"no product {pid}")
        wanted = carts.quantity(user, pid) + qty
        if wanted > MAX_QTY_PER_LINE:
            return problem(409, f"at most {MAX_QTY_PER_LINE} of one product per cart")
        if wanted > product["stock"]:
            return problem(409, f"only {product['stock']} of product {pid} in stock")
        carts.set_quantity(user, pid, wanted)
    return web.json_response({"user": user, "product": pid, "qty": wanted})


async def show_cart(request: web.Request) -> web.Response:
    with connect(request.app[DB_PATH]) as conn:
        return web.json_response(CartRepository(conn).view(request.match_info["user"]))


async def place_order(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    with connect(request.app[DB_PATH]) as conn:
        carts = CartRepository(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            cart = carts.view(user)
            if not cart["items"]:
                conn.execute("ROLLBACK")
                return problem(409, "cart is empty")
            for item in cart["items"]:
                if carts.products.get(item["product"])["stock"] < item["qty"]:
                    conn.execute("ROLLBACK")
                    return problem(409, f"product {item['product']} is out of stock")
            order_id = conn.execute(
                "INSERT INTO orders (user, subtotal_cents, shipping_cents, total_cents, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (user, cart["subtotal_cents"], cart["shipping_cents"], cart["total_cents"], time.time()),
            ).lastrowid
            for item in cart["items"]:
                conn.execute("UPDATE products SET stock = stock - ? WHERE id = ?", (item["qty"], item["product"]))
                conn.execute(
                    "INSERT INTO order_items (order_id, product, qty, price_cents) VALUES (?, ?, ?, ?)",
                    (order_id, item["product"], item["qty"], item["price_cents"]),
                )
            carts.clear(user)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    body = {k: cart[k] for k in ("user", "count", "subtotal_cents", "shipping_cents", "total_cents")}
    return web.json_response({"order": order_id, **body}, status=201, headers=revenue_header(cart["total_cents"]))


def make_app(db: sqlite3.Connection) -> web.Application:
    # This implementation opens a connection per request, so it keeps only the file's path.
    path = db.execute("PRAGMA database_list").fetchone()[2]
    app = web.Application()
    app[DB_PATH] = path
    # The start-up connection stays open, unused: while one connection is open
    # SQLite keeps the WAL file, instead of checkpointing and deleting it each
    # time a request's connection closes.
    app[WAL_HOLDER] = db
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/products", list_products)
    app.router.add_get(r"/products/{pid:\d+}", show_product)
    app.router.add_post("/cart/{user}/items", add_item)
    app.router.add_get("/cart/{user}", show_cart)
    app.router.add_post("/checkout/{user}", place_order)
    return app


if __name__ == "__main__":
    serve("The shop with a repository layer (N+1 queries, a connection per request).", make_app)
