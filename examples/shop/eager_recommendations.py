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
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
import mainline  # noqa: E402
from common import serve  # noqa: E402

# Hash rounds per request: a few milliseconds of CPU on a current core.
ROUNDS = 6000

POOL = web.AppKey("pool", object)


def recompute(key: bytes) -> str:
    """The recommendations of ``key``: deliberately wasteful, pure CPU."""
    h = hashlib.sha256(key)
    for _ in range(ROUNDS):
        h = hashlib.sha256(h.digest())
    return h.hexdigest()


def recommender_main() -> None:
    """The worker process: one key a line on stdin, recomputed at the lowest CPU priority.

    It runs in a session of its own, so that it has its own scheduling group
    (Linux's autogroup, on by default), at the lowest weight: nice alone acts
    only inside a group, and a worker in its server's group made the whole
    group (server included) wait behind the other variants' groups.
    """
    os.nice(19)
    try:
        Path("/proc/self/autogroup").write_text("19")
    except OSError:
        pass  # no autogroup (another kernel, or turned off): nice is what acts then
    server = os.getppid()
    for line in sys.stdin.buffer:
        if os.getppid() != server:
            return  # the server is gone (killed with its process group, which this session is not in)
        recompute(line.rstrip(b"\n"))


class Recommender:
    """Hands keys to the worker process through a pipe, from the event loop, without waiting.

    No thread in the serving process (a multiprocessing pool's feeder and
    result threads take the GIL from the event loop), and the worker in a
    scheduling group of its own (recommender_main): in the demo beside other
    variants on a busy two-core machine these pages were +90-230% slower at
    p50, a latency change, not the CPU-only change this example stands for.
    A full pipe (its 64 KiB buffer: a machine too busy to keep up) drops the key.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--recommender"], stdin=subprocess.PIPE, start_new_session=True
        )  # it leaves when its stdin closes: with this server, whoever stops it
        assert self.proc.stdin is not None
        self.fd = self.proc.stdin.fileno()
        os.set_blocking(self.fd, False)

    def submit(self, key: str) -> None:
        try:
            os.write(self.fd, key.encode() + b"\n")
        except (BlockingIOError, BrokenPipeError):
            pass

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


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
    if sys.argv[1:] == ["--recommender"]:
        recommender_main()
        sys.exit(0)
    serve("The eager-recommendations shop (mainline pages, CPU-hungry background work).", make_app)
