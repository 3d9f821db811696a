"""The fast request path and the general (httptools) path must agree.

A request that arrives whole on an idle connection takes the fast path; the
same bytes dribbled in pieces take httptools' path.  Each case is sent both
ways: the variant must receive the same method, target, headers and body,
the client the same answer, and the router must count the same.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from bakeoff.router.config import RouterConfig
from bakeoff.router.server import Router
from tests.router.conftest import Upstream

RID = b"X-Request-Id: fixed\r\n"
CASES = {
    "get": b"GET /a?b=c HTTP/1.1\r\nHost: h\r\n" + RID + b"\r\n",
    "post": b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n" + RID + b"\r\nhello",
    "sticky": b"GET /s HTTP/1.1\r\nHost: h\r\nX-User-Id:   u-42  \r\n" + RID + b"\r\n",
    "cookie-and-sticky": b"GET / HTTP/1.1\r\nHost: h\r\nCookie: uid=7\r\nx-user-id: u-7\r\n" + RID + b"\r\n",
    "hop-by-hop": (
        b"GET /h HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: 300\r\nTE: trailers\r\n"
        b"Proxy-Connection: keep-alive\r\nTrailer: x\r\n" + RID + b"\r\n"
    ),
    "xff": b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Forwarded-Proto: https\r\n"
    + RID
    + b"\r\n",
    "override": b"GET / HTTP/1.1\r\nHost: h\r\nX-Bakeoff-Variant: b\r\n" + RID + b"\r\n",
    "close": b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n" + RID + b"\r\n",
    "connection-lists": b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Hop\r\nX-Hop: 1\r\n" + RID + b"\r\n",
    "head": b"HEAD /x HTTP/1.1\r\nHost: h\r\n" + RID + b"\r\n",
    "empty-value": b"DELETE /d HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n" + RID + b"\r\n",
    "tab-value": b"PATCH /t HTTP/1.1\r\nHost: h\r\nX-Tab:\ta\tb\r\nContent-Length: 0\r\n" + RID + b"\r\n",
    "no-request-id": b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n",
    "bad-length": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",
    "two-lengths": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: h\r\nX-Fold: a\r\n b\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    # Lines the fast path's findall skips: the lines it finds no longer tile the head.
    "line-without-colon": b"GET / HTTP/1.1\r\nHost: h\r\nJunk\r\nX-A: 1\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
    "bare-cr-in-value": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
}


async def _send(port: int, request: bytes, piece: int) -> bytes:
    """Send ``request`` in pieces of ``piece`` bytes and return the router's whole response.

    Reads the head, then the body its Content-Length frames (none for HEAD),
    or to the close; fails unless a complete response arrives, so two hung
    paths cannot agree on an empty answer.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = b""
    try:
        try:
            for i in range(0, len(request), piece):
                writer.write(request[i : i + piece])
                await writer.drain()
                if piece < len(request):
                    await asyncio.sleep(0.002)  # a client dribbling its bytes: what sends it down the general path
        except ConnectionError:
            pass  # a router that answered 400 and closed may reset a client still writing
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            end = got.find(b"\r\n\r\n")
            if end >= 0:
                length = re.search(rb"(?im)^content-length:[ \t]*(\d+)", got[:end])
                if request.startswith(b"HEAD ") or (length and len(got) >= end + 4 + int(length.group(1))):
                    return got
            try:
                data = await asyncio.wait_for(reader.read(65536), max(deadline - asyncio.get_running_loop().time(), 0))
            except TimeoutError:
                raise AssertionError(
                    f"no complete response within 20s to {request[:40]!r} in pieces of {piece}: {got!r}"
                ) from None
            except ConnectionError:
                data = b""  # a reset after the answer: what arrived is all there is
            if not data:
                assert end >= 0 and got.startswith(b"HTTP/1.1 "), (
                    f"the connection closed without a response to {request[:40]!r} in pieces of {piece}: {got!r}"
                )
                return got  # framed by the close
            got += data
    finally:
        writer.close()


ROUTED_BY_REQUEST = {"sticky", "cookie-and-sticky", "override"}


def _mask(response: bytes) -> bytes:
    for name in (b"a", b"b"):
        response = response.replace(b"X-Bakeoff-Variant: " + name, b"X-Bakeoff-Variant: *")
        response = response.replace(b"X-Upstream: " + name, b"X-Upstream: *")
        response = response.replace(b"\r\n\r\n" + name + b" ", b"\r\n\r\n* ")
    return response


def _normalise(response: bytes) -> bytes:
    # The Date header of the upstream differs from request to request.
    return b"\r\n".join(line for line in response.split(b"\r\n") if not line.startswith(b"Date:"))


@pytest.mark.parametrize("case", sorted(CASES))
async def test_fast_and_general_request_paths_agree(case):
    ups = [await Upstream("a").start(), await Upstream("b").start()]
    router = Router(
        RouterConfig.from_dict(
            {
                "listen": "127.0.0.1:0",
                "admin": "127.0.0.1:0",
                "stickiness": {"header": "X-User-Id"},
                "override": {"enabled": True},
                "variants": [{"name": u.name, "upstreams": [u.address], "weight": 1} for u in ups],
            }
        )
    )
    await router.start()
    try:
        request = CASES[case]
        results = []
        for piece in (len(request), 3):
            for u in ups:
                u.seen.clear()
            before = router.snapshot()["variants"]
            response = await _send(router.port, request, piece)
            after = router.snapshot()["variants"]
            seen = [dict(s, variant=u.name) for u in ups for s in u.seen]
            for s in seen:
                if case == "no-request-id":
                    s["headers"].pop("x-request-id")  # generated, so different each time
            counts = {n: after[n]["requests"] - before[n]["requests"] for n in after}
            results.append((_normalise(response), seen, counts))
        (fast_resp, fast_seen, fast_counts), (slow_resp, slow_seen, slow_counts) = results
        if case not in ROUTED_BY_REQUEST:
            # Keyless requests are split at random: compare all but the variant.
            fast_resp, slow_resp = (_mask(r) for r in (fast_resp, slow_resp))
            for s in fast_seen + slow_seen:
                s["variant"] = "*"
            fast_counts = sum(fast_counts.values())
            slow_counts = sum(slow_counts.values())
        if case == "no-request-id":
            fast_resp = fast_resp.split(b"\r\n", 1)[0]
            slow_resp = slow_resp.split(b"\r\n", 1)[0]
        assert fast_resp == slow_resp
        assert fast_seen == slow_seen
        assert fast_counts == slow_counts
        if case in ("sticky", "cookie-and-sticky"):
            expected = router.routes.pick_sticky(b"u-42" if case == "sticky" else b"u-7").name
            assert [s["variant"] for s in fast_seen] == [expected]
        if case == "override":
            assert [s["variant"] for s in fast_seen] == ["b"]
        for s in fast_seen:
            assert not {"keep-alive", "te", "proxy-connection", "trailer", "x-hop", "x-bakeoff-variant"} & set(
                s["headers"]
            )
    finally:
        await router.stop(drain_timeout=1)
        for u in ups:
            await u.stop()
