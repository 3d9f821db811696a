"""Slow, refusing, broken and killed upstreams: clear answers, a router that lives."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import subprocess
import sys
import textwrap

import aiohttp
from aiohttp import web

from tests.conftest import eventually_async
from tests.router.conftest import SEEN, Upstream, free_port, raw_exchange


async def fetch(port: int, path: str = "/", **kw) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}{path}", **kw) as r:
            return r.status, await r.text()


async def test_refusing_upstream_gets_502_and_counts_connect_error(upstreams, make_router):
    (good,) = await upstreams("good")
    dead = Upstream("dead")
    dead.port = free_port()  # nothing listens here
    router = await make_router([dead, good], weights=[1, 0])
    status, body = await fetch(router.port)
    assert status == 502
    assert "variant dead" in body and "connection failed" in body
    assert "Traceback" not in body
    snap = router.snapshot()["variants"]
    assert snap["dead"]["outcomes"]["connect_error"] == 1
    # The router is fine and serves whatever has weight.
    router.set_routes([_spec(good, 1)])
    assert await fetch(router.port) == (200, "good GET / 0")


async def test_slow_upstream_gets_504_after_read_timeout(make_router):
    app = web.Application()
    app[SEEN] = []

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)  # a slow upstream: the behaviour under test
        return web.Response(text="late")

    app.router.add_get("/", slow)
    up = await Upstream("slow", app).start()
    try:
        router = await make_router([up], timeouts={"read": 0.3})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        status, body = await fetch(router.port)
        elapsed = loop.time() - t0
        assert status == 504
        assert "no response within 0.3s" in body
        assert elapsed < 1.5
        assert router.snapshot()["variants"]["slow"]["outcomes"]["timeout"] == 1
    finally:
        await up.stop()


async def _raw_upstream(handler) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_upstream_dying_mid_body_closes_client_and_router_lives(upstreams, make_router):
    async def truncating(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.transport.abort()

    server, port = await _raw_upstream(truncating)
    (good,) = await upstreams("good")
    broken = Upstream("broken")
    broken.port = port
    try:
        router = await make_router([broken])
        data = await raw_exchange(router.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"x" * 10)  # truncated, and the connection was closed on the client
        assert router.snapshot()["variants"]["broken"]["outcomes"]["connect_error"] == 1
        router.set_routes([_spec(good, 1)])
        assert await fetch(router.port) == (200, "good GET / 0")
    finally:
        server.close()


async def test_upstream_sending_garbage_gets_502(make_router):
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SMTP READY\r\n\r\n")
        await writer.drain()

    server, port = await _raw_upstream(garbage)
    up = Upstream("garbage")
    up.port = port
    try:
        router = await make_router([up])
        status, body = await fetch(router.port)
        assert status == 502
        assert "malformed response" in body
    finally:
        server.close()


async def test_upstream_closing_pooled_connections_costs_no_request(make_router):
    """An upstream that closes every connection after answering (without saying so)."""

    async def one_shot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server, port = await _raw_upstream(one_shot)
    up = Upstream("oneshot")
    up.port = port
    try:
        router = await make_router([up])
        statuses = []
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                async with s.get(f"http://127.0.0.1:{router.port}/") as r:
                    statuses.append(r.status)
                    await r.read()
        assert statuses == [200] * 200
    finally:
        server.close()


UPSTREAM_SCRIPT = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    async def h(request):
        return web.Response(text="proc")
    app = web.Application()
    app.router.add_get("/{t:.*}", h)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("ready", flush=True))
    """
)


async def test_killed_upstream_process_then_restarted(make_router, tmp_path):
    port = free_port()
    script = tmp_path / "up.py"
    script.write_text(UPSTREAM_SCRIPT)

    def spawn() -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b"ready"
        return p

    proc = spawn()
    up = Upstream("proc")
    up.port = port
    router = await make_router([up])
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(5):  # fills the pool with keep-alive connections
                async with s.get(f"http://127.0.0.1:{router.port}/") as r:
                    assert r.status == 200
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        status, body = await fetch(router.port)
        assert status == 502 and "variant proc" in body
        proc = spawn()
        assert await fetch(router.port) == (200, "proc")
        outcomes = router.snapshot()["variants"]["proc"]["outcomes"]
        assert outcomes["2xx"] == 6 and outcomes["connect_error"] == 1
    finally:
        proc.kill()
        proc.wait()


async def test_client_leaving_mid_response_is_counted_aborted(make_router):
    app = web.Application()
    app[SEEN] = []

    arrived = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        await asyncio.sleep(0.5)  # a slow upstream: the client leaves before the answer
        return web.Response(text="late")

    app.router.add_get("/", slow)
    up = await Upstream("s", app).start()
    try:
        router = await make_router([up])
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        await writer.drain()
        await eventually_async(lambda: arrived, what="the request at the upstream")
        # SO_LINGER 0 makes close() send a reset: the client is gone, not half-closed.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        outcomes = await eventually_async(
            lambda: router.snapshot()["variants"]["s"]["outcomes"],
            until=lambda o: sum(o.values()) >= 1,
            what="the request counted",
        )
        assert outcomes["aborted"] == 1
        assert await fetch(router.port) == (200, "late")
    finally:
        await up.stop()


def _spec(up: Upstream, weight: float):
    from bakeoff.router.config import VariantSpec

    return VariantSpec(up.name, (("127.0.0.1", up.port),), weight)


async def test_upstream_that_never_accepts_gets_504_after_connect_timeout(make_router):
    # A listener whose accept queue is full: Linux drops further SYNs, so a
    # connect neither succeeds nor fails -- what a black-holed host looks like.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    up = Upstream("blackhole")
    up.port = port
    try:
        router = await make_router([up], timeouts={"connect": 0.3})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        status, body = await fetch(router.port)
        assert status == 504
        assert "did not accept a connection in time" in body
        assert loop.time() - t0 < 2
        assert router.snapshot()["variants"]["blackhole"]["outcomes"]["timeout"] == 1
    finally:
        for s in fillers:
            s.close()
        listener.close()
