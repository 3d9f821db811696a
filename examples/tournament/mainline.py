"""The catalogue as it runs today (aiohttp): items in a list, searched from the start on every request."""

from __future__ import annotations

from aio import checkout_handler, error, serve
from aiohttp import web
from common import catalogue, page_of

ITEMS = catalogue()


async def list_items(request: web.Request) -> web.Response:
    return web.json_response(page_of(ITEMS, request.query.get("category")))


async def get_item(request: web.Request) -> web.Response:
    try:
        wanted = int(request.match_info["id"])
    except ValueError:
        return error(400, "id must be an integer")
    for it in ITEMS:
        if it["id"] == wanted:
            return web.json_response(it)
    return error(404, f"no item {wanted}")


if __name__ == "__main__":
    serve(
        __doc__ or "",
        list_items=list_items,
        get_item=get_item,
        post_checkout=checkout_handler({it["id"]: it for it in ITEMS}, "standard"),
    )
