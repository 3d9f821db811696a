"""A service for the display tests: ``reporting.py --port P [--delay-ms D] [--rate R]``.

Every response carries ``Bakeoff-Metric-conversion``: ``1`` with probability R, else ``0`` (a
service that reports every request, as many do); each answer waits D milliseconds.
"""

import argparse
import asyncio
import random

from aiohttp import web


def make_app(delay: float, rate: float) -> web.Application:
    rng = random.Random()

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def page(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)  # a slow service: the behaviour the display tests look for
        converted = "1" if rng.random() < rate else "0"
        return web.Response(text=request.path, headers={"Bakeoff-Metric-conversion": converted})

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_get("/{tail:.*}", page)
    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--rate", type=float, default=0.1)
    a = p.parse_args()
    web.run_app(make_app(a.delay_ms / 1000, a.rate), host="127.0.0.1", port=a.port, access_log=None, print=None)
