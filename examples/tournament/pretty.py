"""A rewrite that answers with indented, key-sorted JSON (aiohttp): the same data, bigger answers."""

from __future__ import annotations

import json
from functools import partial

from aio import checkout_handler, error, serve
from aiohttp import web
from common import catalogue, page_of

ITEMS = catalogue()
BY_ID = {it["id"]: it for it in ITEMS}
dumps = partial(json.dumps, indent=2, sort_keys=True)


async def list_items(request: web.Request) -> web.Response:
    return web.json_response(page_of(ITEMS, request.query.get("category")), dumps=dumps)


async def get_item(request: web.Request) -> web.Response:
    try:
        it = BY_ID.get(int(request.match_info["id"]))
    except ValueError:
        return error(400, "id must be an integer")
    return web.json_response(it, dumps=dumps) if it else error(404, "no such item")


if __name__ == "__main__":
    serve(__doc__ or "", list_items=list_items, get_item=get_item, post_checkout=checkout_handler(BY_ID, "standard"))
