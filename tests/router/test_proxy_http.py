"""HTTP/1.1 behaviour of the data plane against real upstream servers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import eventually_async
from tests.router.conftest import SEEN, Upstream, raw_exchange


def split_responses(data: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Parse concatenated Content-Length-framed responses (test helper, not the router's parser)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get(b"content-length", b"0"))
        if lines[0].split(b" ")[1] in (b"204", b"304"):
            n = 0
        out.append((lines[0], headers, rest[:n]))
        data = rest[n:]
    return out


async def test_get_and_post_reach_the_variant_with_forwarding_headers(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{router.port}/items?x=1", headers={"X-Request-Id": "given-id"}) as r:
            assert r.status == 200
            assert await r.text() == "alpha GET /items?x=1 0"
            assert r.headers["X-Bakeoff-Variant"] == "alpha"
        async with s.post(f"http://127.0.0.1:{router.port}/upload", data=b"z" * 12345) as r:
            assert await r.text() == "alpha POST /upload 12345"
    first, second = a.seen
    assert first["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert first["headers"]["x-forwarded-proto"] == "http"
    assert first["headers"]["x-request-id"] == "given-id"
    assert second["headers"]["x-request-id"] and second["headers"]["x-request-id"] != "given-id"


async def test_hop_by_hop_headers_are_removed_and_xff_appended(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    req = (
        b"GET /h HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\n"
        b"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n"
        b"X-Forwarded-For: 10.1.2.3\r\nX-Kept: yes\r\n\r\n"
    )
    data = await raw_exchange(router.port, req, read_timeout=0.5)
    assert data.startswith(b"HTTP/1.1 200")
    seen = a.seen[0]["headers"]
    for gone in ("x-private", "keep-alive", "te", "proxy-connection"):
        assert gone not in seen, gone
    assert seen["x-kept"] == "yes"
    assert seen["host"] == "example"
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"


async def test_metric_headers_are_recorded_and_stripped(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    async with aiohttp.ClientSession() as s:
        for value in ("2.5", "4", "not-a-number", "nan"):
            async with s.get(f"http://127.0.0.1:{router.port}/buy?metric={value}") as r:
                assert r.status == 200
                assert not any(h.lower().startswith("bakeoff-metric") for h in r.headers)
    v = router.snapshot()["variants"]["alpha"]
    assert v["metrics"]["revenue"] == {"count": 2, "sum": 6.5, "sum_sq": 2.5**2 + 16}
    assert v["invalid_metrics"] == 2
    assert v["requests"] == 4 and v["outcomes"]["2xx"] == 4


async def test_chunked_bodies_both_ways(upstreams, make_router):
    async def chunky(request: web.Request) -> web.StreamResponse:
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"part{i}:{total};".encode())
        await resp.write_eof()
        return resp

    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/c", chunky)
    up = await Upstream("chunky", app).start()
    try:
        router = await make_router([up])

        async def gen():
            for _ in range(10):
                yield b"x" * 1000

        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{router.port}/c", data=gen()) as r:
                assert r.headers.get("Transfer-Encoding") == "chunked"
                assert await r.text() == "".join(f"part{i}:10000;" for i in range(5))
    finally:
        await up.stop()


async def test_head_204_304_have_no_body_and_keep_the_connection(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    req = (
        b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /y?status=204 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /z?status=304 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    data = await raw_exchange(router.port, req)
    # HEAD keeps the Content-Length the GET would have, and no body follows.
    head_end = data.index(b"\r\n\r\n") + 4
    assert data.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 15" in data[:head_end]  # len("alpha HEAD /x 0")
    rest = data[head_end:]
    responses = split_responses(rest)
    assert [r[0].split(b" ")[1] for r in responses] == [b"204", b"304", b"200"]
    assert responses[-1][2] == b"alpha GET /last 0"


async def test_pipelined_requests_are_answered_in_order(upstreams, make_router):
    slow_first = web.Application()
    slow_first[SEEN] = []

    async def handler(request: web.Request) -> web.Response:
        delay = float(request.query.get("delay", 0))
        await asyncio.sleep(delay)  # answers out of order: what the router must put back in order
        return web.Response(text=request.path_qs)

    slow_first.router.add_get("/{tail:.*}", handler)
    up = await Upstream("p", slow_first).start()
    try:
        router = await make_router([up])
        req = b"".join(
            b"GET /r%d?delay=%s HTTP/1.1\r\nHost: h\r\n\r\n" % (i, d)
            for i, d in enumerate([b"0.2", b"0", b"0.1", b"0"])
        )
        data = await raw_exchange(router.port, req, read_timeout=1.0)
        bodies = [r[2] for r in split_responses(data)]
        assert bodies == [b"/r0?delay=0.2", b"/r1?delay=0", b"/r2?delay=0.1", b"/r3?delay=0"]
    finally:
        await up.stop()


async def test_expect_100_continue_passes_interim_response(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(b"hello")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"HTTP/1.1 200")
    body = await asyncio.wait_for(reader.read(100), 3)
    assert body == b"alpha POST /e 5"
    writer.close()


async def test_websocket_passes_through(make_router):
    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    app = web.Application()
    app[SEEN] = []
    app.router.add_get("/ws", ws_handler)
    up = await Upstream("ws", app).start()
    try:
        router = await make_router([up])
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"http://127.0.0.1:{router.port}/ws") as ws:
                for i in range(20):
                    await ws.send_str(f"m{i}")
                    assert (await ws.receive_str(timeout=3)) == f"echo:m{i}"
                big = bytes(range(256)) * 1000
                await ws.send_bytes(big)
                assert (await ws.receive_bytes(timeout=3)) == big[::-1]
        outcomes = await eventually_async(
            lambda: router.snapshot()["variants"]["ws"]["outcomes"],
            until=lambda o: o["upgraded"] >= 1,
            what="the closed tunnel counted",
        )
        assert outcomes["upgraded"] == 1
        assert outcomes["1xx"] == 0
    finally:
        await up.stop()


@pytest.mark.parametrize(
    "payload",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    ],
)
async def test_malformed_request_gets_400_and_close(upstreams, make_router, payload):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    data = await raw_exchange(router.port, payload)
    assert data.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"Connection: close" in data
    assert not a.seen  # nothing reached the variant


async def test_malformed_request_after_a_good_one_answers_the_good_one_first(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    data = await raw_exchange(router.port, b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGARBAGE\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    assert b"alpha GET /ok 0" in data
    assert data.rstrip().endswith(b"400 Bad Request: the request is not valid HTTP/1.1")


async def test_oversized_head_gets_431(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a], limits={"maxHeaderBytes": 4096})
    big = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n"
    data = await raw_exchange(router.port, big)
    assert data.startswith(b"HTTP/1.1 431")
    long_url = b"GET /" + b"u" * 10000 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    data = await raw_exchange(router.port, long_url)
    assert data.startswith(b"HTTP/1.1 431")
    # Just under the limit still passes.
    ok = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 3000 + b"\r\nConnection: close\r\n\r\n"
    assert (await raw_exchange(router.port, ok)).startswith(b"HTTP/1.1 200")


async def test_http10_client_gets_a_close_delimited_or_length_framed_response(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    data = await raw_exchange(router.port, b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in data
    assert data.endswith(b"alpha GET /old 0")


async def test_idle_and_slow_head_connections_are_closed(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a], timeouts={"idle": 0.4, "head": 0.6})
    loop = asyncio.get_running_loop()
    # Idle keep-alive after one response.
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await reader.readuntil(b"alpha GET / 0")
    t0 = loop.time()
    assert await asyncio.wait_for(reader.read(), 3) == b""
    assert 0.3 < loop.time() - t0 < 2
    # A head dribbled a byte at a time never completes: after timeouts.head
    # the client is told so (408), then the connection closes.  Every byte
    # keeps the connection active, so the idle timeout never fires.
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    t0 = loop.time()
    closed_after = None
    answer = b""
    for ch in b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"a" * 200:
        try:
            writer.write(bytes([ch]))
            await writer.drain()
        except ConnectionError:
            break
        try:
            data = await asyncio.wait_for(reader.read(4096), 0.05)
        except TimeoutError:
            continue
        except ConnectionError:
            break
        if data == b"":
            closed_after = loop.time() - t0
            break
        answer += data
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"Connection: close" in answer
    assert closed_after is not None and 0.5 < closed_after < 5
    assert not a.seen[1:]  # only the first, complete request reached the variant


async def test_bad_chunk_in_a_streaming_body_releases_the_upstream(upstreams, make_router):
    (a,) = await upstreams("alpha")
    router = await make_router([a])
    req = b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n"
    data = await raw_exchange(router.port, req)
    assert data.startswith(b"HTTP/1.1 400")
    outcomes = await eventually_async(
        lambda: router.snapshot()["variants"]["alpha"]["outcomes"],
        until=lambda o: o["aborted"] >= 1,
        what="the aborted request counted",
    )
    assert outcomes["aborted"] == 1
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{router.port}/next") as r:
            assert await r.text() == "alpha GET /next 0"


async def test_tunnel_applies_back_pressure_to_a_fast_client(make_router):
    """An upgraded connection whose upstream stops reading must stop the client, not buffer."""

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)  # never reads again: the behaviour under test

    server = await asyncio.start_server(deaf, "127.0.0.1", 0)
    up = Upstream("deaf")
    up.port = server.sockets[0].getsockname()[1]
    try:
        router = await make_router([up])
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET /t HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        sent = 0
        block = b"z" * 65536
        try:
            while sent < 64 * 1024 * 1024:
                writer.write(block)
                await asyncio.wait_for(writer.drain(), 1.0)
                sent += len(block)
        except TimeoutError:
            pass
        assert sent < 64 * 1024 * 1024, "the client was never slowed down"
        (client,) = router.clients
        buffered = client.tunnel.transport.get_write_buffer_size()
        assert buffered < 2 * 1024 * 1024, f"router buffered {buffered} bytes for a deaf upstream"
        writer.transport.abort()
    finally:
        server.close()
