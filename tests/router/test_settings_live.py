"""The Router's per-request settings live in one compiled object each connection holds (issue 18 item 1).

``Router`` keeps them as properties over ``Router.settings``
(downstream.RouterSettings), which every ``ClientConnection`` reads instead of
the interpreted Router's attributes.  A change made on the Router -- a new
routing table, draining, the variant header, stickiness -- must reach a
keep-alive connection that was open before it, on the fast request path and
the general one alike.
"""

from __future__ import annotations

import asyncio
import dataclasses

from bakeoff.router.downstream import RouterSettings


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[bytes, bytes]:
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return head, body


FAST = b"GET /x HTTP/1.1\r\nHost: t\r\nX-User-Id: %s\r\n\r\n"
# Split in two writes: httptools' general path, not the fast one.
GENERAL = (b"GET /x HTTP/1.1\r\nHost: t\r\n", b"X-User-Id: %s\r\n\r\n")


async def test_router_settings_reach_an_open_connection(upstreams, make_router):
    a, b = await upstreams("a", "b")
    router = await make_router([a, b], weights=[1, 0], stickiness={"header": "X-User-Id"})
    assert isinstance(router.settings, RouterSettings)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    try:
        head, body = await _get(reader, writer, FAST % b"u1")
        assert body.startswith(b"a GET"), body
        assert b"X-Bakeoff-Variant: a\r\n" in head
        assert b"Connection: close" not in head

        # Routes and the variant header, changed on the Router, apply to the next request of this connection.
        router.set_routes([dataclasses.replace(v, weight=1.0 - v.weight) for v in router.config.variants])
        assert router.settings.routes is router.routes
        router.expose_variant = False
        head, body = await _get(reader, writer, FAST % b"u1")
        assert body.startswith(b"b GET"), body
        assert b"X-Bakeoff-Variant" not in head
        # The general path reads the same settings.
        writer.write(GENERAL[0])
        await writer.drain()
        await asyncio.sleep(0.05)
        head, body = await _get(reader, writer, GENERAL[1] % b"u2")
        assert body.startswith(b"b GET"), body
        assert b"X-Bakeoff-Variant" not in head

        # Stickiness moved to another header: the old one is passed on as an ordinary header now.
        router.set_stickiness("header", "X-Other")
        assert router.settings.sticky_header == b"x-other"
        head, body = await _get(reader, writer, FAST % b"u3")
        assert body.startswith(b"b GET")
        assert b.seen[-1]["headers"]["x-user-id"] == "u3"

        # Draining: the response on this connection says it closes.
        router.draining = True
        assert router.settings.draining is True
        head, body = await _get(reader, writer, FAST % b"u4")
        assert b"Connection: close\r\n" in head
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        router.draining = False
        writer.close()
