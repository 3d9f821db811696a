"""A rewrite that asks a (simulated) pricing service for current prices on every catalogue page:
the page waits about 25 ms for the answer (aiohttp)."""

from __future__ import annotations

import asyncio

from aio import checkout_handler, serve
from aiohttp import web
from common import page_of
from mainline import ITEMS, get_item

PRICING_LATENCY = 0.025


async def list_items(request: web.Request) -> web.Response:
    await asyncio.sleep(PRICING_LATENCY)  # the round trip to the pricing service
    return web.json_response(page_of(ITEMS, request.query.get("category")))


if __name__ == "__main__":
    serve(
        __doc__ or "",
        list_items=list_items,
        get_item=get_item,
        post_checkout=checkout_handler({it["id"]: it for it in ITEMS}, "standard"),
    )
