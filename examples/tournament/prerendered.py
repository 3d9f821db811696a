"""A rewrite that serialises every answer it can once at start-up and serves the bytes (aiohttp)."""

from __future__ import annotations

import json

from aio import checkout_handler, error, serve
from aiohttp import web
from common import CATEGORIES, catalogue, page_of

ITEMS = catalogue()
PAGES = {c: json.dumps(page_of(ITEMS, c)).encode() for c in (None, *CATEGORIES)}
ONE = {it["id"]: json.dumps(it).encode() for it in ITEMS}


async def list_items(request: web.Request) -> web.Response:
    category = request.query.get("category")
    body = PAGES.get(category) or json.dumps(page_of(ITEMS, category)).encode()
    return web.Response(body=body, content_type="application/json")


async def get_item(request: web.Request) -> web.Response:
    try:
        body = ONE.get(int(request.match_info["id"]))
    except ValueError:
        return error(400, "id must be an integer")
    return web.Response(body=body, content_type="application/json") if body else error(404, "no such item")


if __name__ == "__main__":
    serve(
        __doc__ or "",
        list_items=list_items,
        get_item=get_item,
        post_checkout=checkout_handler({it["id"]: it for it in ITEMS}, "standard"),
    )
