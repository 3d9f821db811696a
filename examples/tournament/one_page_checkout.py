"""The mainline's catalogue with a one-page checkout: more customers complete their order (aiohttp)."""

from __future__ import annotations

from aio import checkout_handler, serve
from mainline import ITEMS, get_item, list_items

if __name__ == "__main__":
    serve(
        __doc__ or "",
        list_items=list_items,
        get_item=get_item,
        post_checkout=checkout_handler({it["id"]: it for it in ITEMS}, "one-page"),
    )
