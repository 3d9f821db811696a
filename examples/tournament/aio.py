"""The aiohttp application most implementations build on: they differ in the handlers they pass."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable

from aiohttp import web
from common import args, checkout, parse_order

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def checkout_handler(items_by_id: dict[int, dict], flow: str) -> Handler:
    rng = random.Random()

    async def handle(request: web.Request) -> web.Response:
        order = parse_order(await request.read())
        if isinstance(order, str):
            return error(400, order)
        answer, headers = checkout(items_by_id, *order, flow, rng)
        return web.Response(text=json.dumps(answer), content_type="application/json", headers=headers)

    return handle


def serve(description: str, *, list_items: Handler, get_item: Handler, post_checkout: Handler) -> None:
    a = args(description)
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/items", list_items)
    app.router.add_get("/items/{id}", get_item)
    app.router.add_post("/checkout", post_checkout)
    web.run_app(app, host=a.host, port=a.port, print=None, access_log=None)
