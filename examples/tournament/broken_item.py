"""A rewrite that adds stock levels to an item's page, with a bug: items with an even id have no stock
entry, and their page fails with a 500 (aiohttp).  Every other route works."""

from __future__ import annotations

from aio import checkout_handler, error, serve
from aiohttp import web
from mainline import ITEMS, list_items

BY_ID = {it["id"]: it for it in ITEMS}
STOCK = {it["id"]: 10 + it["id"] % 7 for it in ITEMS if it["id"] % 2}  # the bug: odd ids only


async def get_item(request: web.Request) -> web.Response:
    try:
        wanted = int(request.match_info["id"])
    except ValueError:
        return error(400, "id must be an integer")
    it = BY_ID.get(wanted)
    if it is None:
        return error(404, f"no item {wanted}")
    return web.json_response({**it, "stock": STOCK[wanted]})  # KeyError -> 500 for an even id


if __name__ == "__main__":
    serve(__doc__ or "", list_items=list_items, get_item=get_item, post_checkout=checkout_handler(BY_ID, "standard"))
