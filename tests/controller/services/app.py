"""A tiny service for the controller tests: ``app.py --port P --behaviour good|slow|error|better|somewhat-better|slightly-better|worse``.

- good: answers at once; 10% of responses report a conversion
- slow: like good, 15 ms later
- error: like good, but 30% of requests fail with 500
- better: like good, but 16% of responses report a conversion
- somewhat-better: like good, but 14% of responses report a conversion
- slightly-better: like good, but 12% of responses report a conversion (a gap to the mainline a
  quarter the size of worse's: it takes many times the requests to tell)
- worse: like good, but 2% of responses report a conversion
"""

import argparse
import asyncio
import random

from aiohttp import web

CONVERSION = {
    "good": 0.10,
    "slow": 0.10,
    "error": 0.10,
    "better": 0.16,
    "slightly-better": 0.12,
    "somewhat-better": 0.14,
    "worse": 0.02,
}


def make_app(behaviour: str) -> web.Application:
    rng = random.Random()

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def page(request: web.Request) -> web.Response:
        if behaviour == "slow":
            await asyncio.sleep(0.015)  # the slow build: the behaviour the judge must find
        if behaviour == "error" and rng.random() < 0.3:
            return web.Response(status=500, text="boom")
        headers = {}
        if rng.random() < CONVERSION[behaviour]:
            headers["Bakeoff-Metric-conversion"] = "1"
        return web.Response(text=f"{behaviour} {request.path}", headers=headers)

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_get("/{tail:.*}", page)
    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--behaviour", choices=sorted(CONVERSION), default="good")
    a = p.parse_args()
    web.run_app(make_app(a.behaviour), host="127.0.0.1", port=a.port, access_log=None, print=None)
