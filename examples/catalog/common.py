"""What the three implementations share: the data and the command line."""

from __future__ import annotations

import argparse
import hashlib

from aiohttp import web

PRODUCTS = 500


def product_name(pid: int) -> str:
    return f"product-{pid:04d}"


def base_price(pid: int) -> float:
    # A stable, id-derived price so every implementation agrees on the data.
    return 5 + int(hashlib.sha256(str(pid).encode()).hexdigest()[:4], 16) % 9500 / 100


def serve(app: web.Application) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
