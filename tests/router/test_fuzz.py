"""Random and mutated bytes at the traffic port never crash the router."""

from __future__ import annotations

import asyncio
import gc
import random

import aiohttp

from bakeoff.router.upstream import UpstreamConnection
from tests.conftest import eventually_async
from tests.router.conftest import mutate

VALID = [
    b"GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-User-Id: u1\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
]


async def test_thousands_of_random_inputs_leave_the_router_serving(upstreams, make_router):
    (a,) = await upstreams("main")
    router = await make_router([a], stickiness={"header": "X-User-Id"}, timeouts={"read": 2, "idle": 1})
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    rng = random.Random(20261122)

    async def one(payload: bytes) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(payload)
            if rng.random() < 0.5:
                writer.write_eof()
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(65536), 0.3)
            except TimeoutError:
                pass
            writer.transport.abort()
        except (ConnectionError, OSError):
            pass

    inputs = []
    for i in range(3000):
        if i % 3 == 0:
            inputs.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))))
        else:
            inputs.append(mutate(rng, b"".join(rng.sample(VALID, rng.randint(1, 3)))))
    for start in range(0, len(inputs), 100):
        await asyncio.gather(*(one(p) for p in inputs[start : start + 100]))

    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            async with s.get(f"http://127.0.0.1:{router.port}/after") as r:
                assert r.status == 200
                assert await r.text() == "main GET /after 0"
    assert errors == [], errors[:3]
    # No upstream connection is left bound to a request that is over.
    # (Within the router's idle timeout of 1 s, which would otherwise tidy up what this looks for.)
    await eventually_async(
        lambda: [o for o in gc.get_objects() if isinstance(o, UpstreamConnection) and not o.closed and o.exchange],
        until=lambda stuck: stuck == [],
        timeout=0.9,
        what="no upstream connection bound to a finished request",
    )
    snap = router.snapshot()["variants"]["main"]
    assert sum(snap["outcomes"].values()) == snap["requests"]
