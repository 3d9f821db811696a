"""The eager-recommendations shop: the mainline's pages, and a lot of CPU behind them.

Every response is handed to a recommendations worker (a child process) that
recomputes "customers who viewed this also viewed" for the product or cart it
served -- hashing co-view counts over the whole catalogue -- instead of doing it
once an hour.  The answer goes nowhere the customer sees, and the work happens
after the response was sent, so pages are exactly as fast as the mainline's:
latency and errors stay flat while the CPU spent per request is several times
the mainline's.  This is the change ``cpu_per_request`` exists to catch.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
import mainline  # noqa: E402
from common import serve  # noqa: E402

# Hash rounds per request: a few milliseconds of CPU on a current core.
ROUNDS = 6000
# Requests waiting for the worker beyond this are not recomputed (a bounded queue: the
# worker never grows without limit on a machine too busy to keep up).
MAX_PENDING = 200

POOL = web.AppKey("pool", object)


def recompute(key: str) -> str:
    """The recommendations of ``key``: deliberately wasteful, pure CPU."""
    h = hashlib.sha256(key.encode())
    for _ in range(ROUNDS):
        h = hashlib.sha256(h.digest())
    return h.hexdigest()


class Recommender:
    def __init__(self) -> None:
        # the worker runs at the lowest CPU priority, so that it takes no time from the pages it
        # follows (without it, on a busy two-core machine its pages were +50% at p50)
        self.pool = multiprocessing.get_context("spawn").Pool(1, initializer=os.nice, initargs=(19,))
        self.pending = 0

    def submit(self, key: str) -> None:
        if self.pending >= MAX_PENDING:
            return
        self.pending += 1
        self.pool.apply_async(recompute, (key,), callback=self._done, error_callback=self._done)

    def _done(self, _: object) -> None:
        self.pending -= 1

    def close(self) -> None:
        self.pool.terminate()


@web.middleware
async def recommend_after(request: web.Request, handler):
    response = await handler(request)
    if request.path != "/healthz":
        request.app[POOL].submit(request.path)  # type: ignore[attr-defined]
    return response


def make_app(db: sqlite3.Connection) -> web.Application:
    app = mainline.make_app(db)
    app.middlewares.append(recommend_after)
    rec = Recommender()
    app[POOL] = rec

    async def stop(_: web.Application) -> None:
        rec.close()

    app.on_cleanup.append(stop)
    return app


if __name__ == "__main__":
    serve("The eager-recommendations shop (mainline pages, CPU-hungry background work).", make_app)
