"""The shop with unit prices: shows a price per kilogram on product pages.

Written as one handler class over a shared connection.  The unit price is a
nice touch for physical goods, but the code assumes every product has a
weight: digital products (e-gift cards, weight 0 g) raise ZeroDivisionError
and GET /products/{id} answers 500 for them.  Everything else behaves like
the mainline.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import MAX_QTY_PER_LINE, PAGE_SIZE, revenue_header, serve, shipping_for  # noqa: E402


class Shop:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.db.row_factory = sqlite3.Row

    # -- helpers -----------------------------------------------------------

    @staticmethod
    def fail(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def product_rows(self, where: str, params: tuple) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT p.id, p.name, c.name AS category, p.price_cents, p.stock, p.weight_grams, p.description "
            f"FROM products p JOIN categories c ON c.id = p.category_id {where}",
            params,
        ).fetchall()

    def cart_contents(self, user: str) -> dict:
        rows = self.db.execute(
            "SELECT ci.product, p.name, ci.qty, p.price_cents FROM cart_items ci "
            "JOIN products p ON p.id = ci.product WHERE ci.user = ? ORDER BY ci.product",
            (user,),
        ).fetchall()
        items = [
            {
                "product": r["product"],
                "name": r["name"],
                "qty": r["qty"],
                "price_cents": r["price_cents"],
                "line_cents": r["qty"] * r["price_cents"],
            }  # fmt: skip
            for r in rows
        ]
        subtotal = sum(i["line_cents"] for i in items)
        return {"user": user, "items": items, "count": sum(i["qty"] for i in items), "subtotal_cents": subtotal,
                "shipping_cents": shipping_for(subtotal), "total_cents": subtotal + shipping_for(subtotal)}  # fmt: skip

    # -- handlers ----------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        self.db.execute("SELECT 1")
        return web.json_response({"status": "ok"})

    async def products(self, request: web.Request) -> web.Response:
        try:
            page = int(request.query.get("page", "1"))
        except ValueError:
            return self.fail(400, "page must be an integer")
        if page < 1:
            return self.fail(400, "page must be >= 1")
        (total,) = self.db.execute("SELECT COUNT(*) FROM products").fetchone()
        rows = self.product_rows("ORDER BY p.id LIMIT ? OFFSET ?", (PAGE_SIZE, (page - 1) * PAGE_SIZE))
        listing = [{k: r[k] for k in ("id", "name", "category", "price_cents", "stock")} for r in rows]
        return web.json_response({"page": page, "per_page": PAGE_SIZE, "total": total,
                                  "pages": -(-total // PAGE_SIZE), "products": listing})  # fmt: skip

    async def product(self, request: web.Request) -> web.Response:
        pid = int(request.match_info["pid"])
        rows = self.product_rows("WHERE p.id = ?", (pid,))
        if not rows:
            return self.fail(404, f"no product {pid}")
        data = dict(rows[0])
        data["price_per_kg_cents"] = round(data["price_cents"] * 1000 / data["weight_grams"])
        return web.json_response(data)

    async def add_item(self, request: web.Request) -> web.Response:
        user = request.match_info["user"]
        try:
            body = await request.json()
        except ValueError:
            return self.fail(400, "body is not JSON")
        if not isinstance(body, dict):
            return self.fail(400, 'expected {"product": <id>, "qty": <n>}')
        pid, qty = body.get("product"), body.get("qty", 1)
        if type(pid) is not int or type(qty) is not int or not 1 <= qty <= MAX_QTY_PER_LINE:
            return self.fail(400, f"product must be an integer id and qty an integer in 1..{MAX_QTY_PER_LINE}")
        found = self.db.execute("SELECT stock FROM products WHERE id = ?", (pid,)).fetchone()
        if found is None:
            return self.fail(404, f"no product {pid}")
        current = self.db.execute("SELECT qty FROM cart_items WHERE user = ? AND product = ?", (user, pid)).fetchone()
        qty_after = qty + (current["qty"] if current else 0)
        if qty_after > MAX_QTY_PER_LINE:
            return self.fail(409, f"at most {MAX_QTY_PER_LINE} of one product per cart")
        if qty_after > found["stock"]:
            return self.fail(409, f"only {found['stock']} of product {pid} in stock")
        if current:
            self.db.execute("UPDATE cart_items SET qty = ? WHERE user = ? AND product = ?", (qty_after, user, pid))
        else:
            self.db.execute("INSERT INTO cart_items (user, product, qty) VALUES (?, ?, ?)", (user, pid, qty_after))
        return web.json_response({"user": user, "product": pid, "qty": qty_after})

    async def cart(self, request: web.Request) -> web.Response:
        return web.json_response(self.cart_contents(request.match_info["user"]))

    async def checkout(self, request: web.Request) -> web.Response:
        user = request.match_info["user"]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cart = self.cart_contents(user)
            if not cart["items"]:
                self.db.execute("ROLLBACK")
                return self.fail(409, "cart is empty")
            for item in cart["items"]:
                changed = self.db.execute(
                    "UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?",
                    (item["qty"], item["product"], item["qty"]),
                ).rowcount
                if changed == 0:
                    self.db.execute("ROLLBACK")
                    return self.fail(409, f"product {item['product']} is out of stock")
            order_id = self.db.execute(
                "INSERT INTO orders (user, subtotal_cents, shipping_cents, total_cents, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (user, cart["subtotal_cents"], cart["shipping_cents"], cart["total_cents"], time.time()),
            ).lastrowid
            self.db.executemany(
                "INSERT INTO order_items (order_id, product, qty, price_cents) VALUES (?, ?, ?, ?)",
                [(order_id, i["product"], i["qty"], i["price_cents"]) for i in cart["items"]],
            )
            self.db.execute("DELETE FROM cart_items WHERE user = ?", (user,))
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        receipt = {"order": order_id, **{k: cart[k] for k in ("user", "count", "subtotal_cents", "shipping_cents",
                                                              "total_cents")}}  # fmt: skip
        return web.json_response(receipt, status=201, headers=revenue_header(cart["total_cents"]))


def make_app(db: sqlite3.Connection) -> web.Application:
    shop = Shop(db)
    app = web.Application()
    app.router.add_get("/healthz", shop.healthz)
    app.router.add_get("/products", shop.products)
    app.router.add_get(r"/products/{pid:\d+}", shop.product)
    app.router.add_post("/cart/{user}/items", shop.add_item)
    app.router.add_get("/cart/{user}", shop.cart)
    app.router.add_post("/checkout/{user}", shop.checkout)
    return app


if __name__ == "__main__":
    serve("The shop that shows unit prices (and fails on weightless products).", make_app)
