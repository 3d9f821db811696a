"""A rewrite that indexes the items by id and by category once at start-up (aiohttp)."""

from __future__ import annotations

from aio import checkout_handler, error, serve
from aiohttp import web
from common import PAGE, catalogue

ITEMS = catalogue()
BY_ID = {it["id"]: it for it in ITEMS}
BY_CATEGORY: dict[str | None, list[dict]] = {None: ITEMS}
for it in ITEMS:
    BY_CATEGORY.setdefault(it["category"], []).append(it)


async def list_items(request: web.Request) -> web.Response:
    found = BY_CATEGORY.get(request.query.get("category"), [])
    return web.json_response({"count": len(found), "items": found[:PAGE]})


async def get_item(request: web.Request) -> web.Response:
    try:
        it = BY_ID.get(int(request.match_info["id"]))
    except ValueError:
        return error(400, "id must be an integer")
    return web.json_response(it) if it else error(404, "no such item")


if __name__ == "__main__":
    serve(__doc__ or "", list_items=list_items, get_item=get_item, post_checkout=checkout_handler(BY_ID, "standard"))
