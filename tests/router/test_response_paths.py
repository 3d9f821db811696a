"""The fast response path and the general (httptools) path must agree exactly.

A response whose head arrives in one read with a Content-Length takes the
fast path; the same bytes dribbled in small pieces take the general path.
Each case below is served both ways by a raw upstream, and the client must
see the same bytes and the router record the same statistics.
"""

from __future__ import annotations

import asyncio

import pytest

from bakeoff.router.config import RouterConfig
from bakeoff.router.server import Router
from tests.router.conftest import raw_exchange

CASES = {
    "plain": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    "hop-by-hop": (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\n"
        b"Proxy-Connection: x\r\nContent-Length: 2\r\nTrailer: Foo\r\n\r\nok"
    ),
    "metrics": (
        b"HTTP/1.1 201 Created\r\nBakeoff-Metric-Revenue: 12.5\r\nX-B: 2\r\nbakeoff-metric-clicks:  3 \r\n"
        b"BAKEOFF-METRIC-bad: x1\r\nContent-Length: 0\r\n\r\n"
    ),
    "no-content": b"HTTP/1.1 204 No Content\r\nX-C: 3\r\n\r\n",
    "not-modified": b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 99\r\n\r\n',
    "server-error": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nRetry-After: 1\r\n\r\nbusy",
    "close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
    "empty-reason": b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
    "utf8-value": "HTTP/1.1 200 OK\r\nX-Name: caf\u00e9\r\nContent-Length: 2\r\n\r\nhi".encode(),
    "big-body": b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + bytes(range(256)) * 1171 + b"x" * 224,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "metric-then-refused": (
        b"HTTP/1.1 200 OK\r\nBakeoff-Metric-x: 1\r\nConnection: X-Secret\r\nX-Secret: s\r\nContent-Length: 2\r\n\r\nok"
    ),
    "connection-lists-header": (
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: s\r\nContent-Length: 2\r\n\r\nok"
    ),
}


async def _serve(response: bytes, piece: int) -> tuple[asyncio.AbstractServer, int]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                # The first 70 bytes in pieces (the head never arrives whole), then the rest.
                cut = 70 if piece < len(response) else 0
                for i in range(0, cut, piece):
                    writer.write(response[i : min(i + piece, cut)])
                    await writer.drain()
                    await asyncio.sleep(0.001)  # an upstream dribbling its head: the behaviour under test
                writer.write(response[cut:])
                await writer.drain()
                if b"Connection: close" in response:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _through_router(response: bytes, piece: int, requests: bytes) -> tuple[bytes, dict]:
    server, port = await _serve(response, piece)
    router = Router(
        RouterConfig.from_dict(
            {
                "listen": "127.0.0.1:0",
                "admin": "127.0.0.1:0",
                "variants": [{"name": "v", "upstreams": [f"127.0.0.1:{port}"], "weight": 1}],
            }
        )
    )
    await router.start()
    try:
        data = await raw_exchange(router.port, requests, read_timeout=1.0)
        return data, router.snapshot()["variants"]["v"]
    finally:
        await router.stop(drain_timeout=1)
        server.close()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_fast_and_general_paths_give_identical_results(case):
    response = CASES[case]
    requests = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    whole, whole_stats = await _through_router(response, len(response), requests)
    dribbled, dribbled_stats = await _through_router(response, 7, requests)
    assert whole == dribbled
    for key in ("requests", "outcomes", "metrics", "invalid_metrics"):
        assert whole_stats[key] == dribbled_stats[key], key
    assert b"bakeoff-metric" not in whole.lower()
    assert b"keep-alive: timeout" not in whole.lower()
    assert b"x-secret" not in whole.lower()
    assert whole.count(b"X-Bakeoff-Variant: v\r\n") == whole_stats["requests"]


async def test_metric_values_are_recorded_from_the_fast_path():
    _, stats = await _through_router(
        CASES["metrics"], len(CASES["metrics"]), b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert stats["metrics"] == {
        "clicks": {"count": 1, "sum": 3.0, "sum_sq": 9.0},
        "revenue": {"count": 1, "sum": 12.5, "sum_sq": 156.25},
    }
    assert stats["invalid_metrics"] == 1


async def test_duplicate_content_lengths_are_not_trusted():
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nokxyz"
    data, stats = await _through_router(bad, len(bad), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 502")
    assert stats["outcomes"]["connect_error"] == 1


async def test_bytes_beyond_the_length_do_not_reach_the_next_client():
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
    data, _ = await _through_router(
        extra, len(extra), b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert data.count(b"ok") >= 1
    assert b"evil" not in data
