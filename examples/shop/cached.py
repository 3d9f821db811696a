"""The cached shop: the catalogue lives in memory.

Products are read from SQLite once at start; product pages and product
details are served from ready-encoded JSON bytes.  SQLite stays the source of
truth for carts, orders and stock: a checkout writes stock to the database
first and then refreshes the cached copies of the products it touched.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import MAX_QTY_PER_LINE, PAGE_SIZE, revenue_header, serve, shipping_for  # noqa: E402

JSON = "application/json"


@dataclass
class Product:
    id: int
    name: str
    category: str
    price_cents: int
    stock: int
    weight_grams: int
    description: str

    def summary(self) -> dict:
        return {"id": self.id, "name": self.name, "category": self.category,
                "price_cents": self.price_cents, "stock": self.stock}  # fmt: skip

    def detail(self) -> dict:
        return {**self.summary(), "weight_grams": self.weight_grams, "description": self.description}


class Catalogue:
    """Products by id plus lazily encoded page and detail bodies, dropped when stock changes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.products: dict[int, Product] = {}
        self.ordered_ids: list[int] = []
        self._page_bodies: dict[int, bytes] = {}
        self._detail_bodies: dict[int, bytes] = {}
        self.reload()

    def reload(self) -> None:
        rows = self.db.execute(
            "SELECT p.id, p.name, c.name, p.price_cents, p.stock, p.weight_grams, p.description "
            "FROM products p JOIN categories c ON c.id = p.category_id ORDER BY p.id"
        ).fetchall()
        self.products = {r[0]: Product(*r) for r in rows}
        self.ordered_ids = [r[0] for r in rows]
        self._page_bodies.clear()
        self._detail_bodies.clear()

    def page_body(self, page: int) -> bytes:
        body = self._page_bodies.get(page)
        if body is None:
            start = (page - 1) * PAGE_SIZE
            ids = self.ordered_ids[start : start + PAGE_SIZE]
            total = len(self.ordered_ids)
            body = json.dumps(
                {
                    "page": page,
                    "per_page": PAGE_SIZE,
                    "total": total,
                    "pages": -(-total // PAGE_SIZE),
                    "products": [self.products[i].summary() for i in ids],
                }  # fmt: skip
            ).encode()
            # Only real pages are kept, so arbitrary ?page=N cannot grow the cache.
            if ids:
                self._page_bodies[page] = body
        return body

    def detail_body(self, pid: int) -> bytes | None:
        body = self._detail_bodies.get(pid)
        if body is None:
            product = self.products.get(pid)
            if product is None:
                return None
            body = self._detail_bodies[pid] = json.dumps(product.detail()).encode()
        return body

    def stock_changed(self, pid: int, stock: int) -> None:
        self.products[pid].stock = stock
        self._detail_bodies.pop(pid, None)
        self._page_bodies.pop(self.ordered_ids.index(pid) // PAGE_SIZE + 1, None)


CATALOGUE = web.AppKey("catalogue", Catalogue)


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def cart_of(request: web.Request, user: str) -> dict:
    catalogue = request.app[CATALOGUE]
    lines = catalogue.db.execute("SELECT product, qty FROM cart_items WHERE user = ? ORDER BY product", (user,))
    items = []
    for pid, qty in lines:
        p = catalogue.products[pid]
        items.append({"product": pid, "name": p.name, "qty": qty, "price_cents": p.price_cents,
                      "line_cents": qty * p.price_cents})  # fmt: skip
    subtotal = sum(i["line_cents"] for i in items)
    return {"user": user, "items": items, "count": sum(i["qty"] for i in items), "subtotal_cents": subtotal,
            "shipping_cents": shipping_for(subtotal), "total_cents": subtotal + shipping_for(subtotal)}  # fmt: skip


routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "products": len(request.app[CATALOGUE].products)})


@routes.get("/products")
async def products_page(request: web.Request) -> web.Response:
    raw = request.query.get("page", "1")
    if not raw.lstrip("-").isdigit():
        return json_error(400, "page must be an integer")
    page = int(raw)
    if page < 1:
        return json_error(400, "page must be >= 1")
    return web.Response(body=request.app[CATALOGUE].page_body(page), content_type=JSON)


@routes.get(r"/products/{pid:\d+}")
async def product(request: web.Request) -> web.Response:
    pid = int(request.match_info["pid"])
    body = request.app[CATALOGUE].detail_body(pid)
    if body is None:
        return json_error(404, f"no product {pid}")
    return web.Response(body=body, content_type=JSON)


@routes.post("/cart/{user}/items")
async def add_item(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "product" not in body:
        return json_error(400, 'expected {"product": <id>, "qty": <n>}')
    pid, qty = body["product"], body.get("qty", 1)
    if type(pid) is not int or type(qty) is not int or not 1 <= qty <= MAX_QTY_PER_LINE:
        return json_error(400, f"product must be an integer id and qty an integer in 1..{MAX_QTY_PER_LINE}")
    catalogue = request.app[CATALOGUE]
    p = catalogue.products.get(pid)
    if p is None:
        return json_error(404, f"no product {pid}")
    row = catalogue.db.execute("SELECT qty FROM cart_items WHERE user = ? AND product = ?", (user, pid)).fetchone()
    total_qty = qty + (row[0] if row else 0)
    if total_qty > MAX_QTY_PER_LINE:
        return json_error(409, f"at most {MAX_QTY_PER_LINE} of one product per cart")
    if total_qty > p.stock:
        return json_error(409, f"only {p.stock} of product {pid} in stock")
    catalogue.db.execute("REPLACE INTO cart_items (user, product, qty) VALUES (?, ?, ?)", (user, pid, total_qty))
    return web.json_response({"user": user, "product": pid, "qty": total_qty})


@routes.get("/cart/{user}")
async def cart(request: web.Request) -> web.Response:
    return web.json_response(cart_of(request, request.match_info["user"]))


@routes.post("/checkout/{user}")
async def checkout(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    catalogue = request.app[CATALOGUE]
    db = catalogue.db
    summary = cart_of(request, user)
    if not summary["items"]:
        return json_error(409, "cart is empty")
    for item in summary["items"]:
        if catalogue.products[item["product"]].stock < item["qty"]:
            return json_error(409, f"product {item['product']} is out of stock")
    with db:  # sqlite3's context manager: one transaction, rolled back on any exception
        db.execute("BEGIN")
        cur = db.execute(
            "INSERT INTO orders (user, subtotal_cents, shipping_cents, total_cents, created_at) VALUES (?, ?, ?, ?, ?)",
            (user, summary["subtotal_cents"], summary["shipping_cents"], summary["total_cents"], time.time()),
        )
        order_id = cur.lastrowid
        for item in summary["items"]:
            db.execute("UPDATE products SET stock = stock - ? WHERE id = ?", (item["qty"], item["product"]))
            db.execute("INSERT INTO order_items VALUES (?, ?, ?, ?)",
                       (order_id, item["product"], item["qty"], item["price_cents"]))  # fmt: skip
        db.execute("DELETE FROM cart_items WHERE user = ?", (user,))
    # The database committed; only now may the cache show the lower stock.
    for item in summary["items"]:
        pid = item["product"]
        catalogue.stock_changed(pid, catalogue.products[pid].stock - item["qty"])
    return web.json_response(
        {
            "order": order_id,
            "user": user,
            "count": summary["count"],
            "subtotal_cents": summary["subtotal_cents"],
            "shipping_cents": summary["shipping_cents"],
            "total_cents": summary["total_cents"],
        },  # fmt: skip
        status=201,
        headers=revenue_header(summary["total_cents"]),
    )


def make_app(db: sqlite3.Connection) -> web.Application:
    app = web.Application()
    app[CATALOGUE] = Catalogue(db)
    app.add_routes(routes)
    return app


if __name__ == "__main__":
    serve("The shop with an in-memory catalogue.", make_app)
