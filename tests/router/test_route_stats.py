"""Per-route statistics (router config ``routes``), on real sockets."""

from __future__ import annotations

import asyncio
import copy

import aiohttp
import pytest

from bakeoff.contracts.snapshot import OUTCOMES, SnapshotError, merge_snapshots, validate
from bakeoff.router.config import ConfigError, RouterConfig

ROUTES = [{"name": "checkout", "match": "/checkout*"}, {"name": "api", "match": "/api/*"}]


async def _in_pieces(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(0, len(request), 4):
        writer.write(request[i : i + 4])
        await writer.drain()
        await asyncio.sleep(0.001)  # a client dribbling its bytes: the general request path under test
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_requests_are_counted_per_route_on_both_request_paths(upstreams, make_router):
    (a,) = await upstreams("main")
    router = await make_router([a], routes=ROUTES)
    async with aiohttp.ClientSession() as s:
        for path in ("/checkout", "/checkout/pay?x=1", "/api/v1", "/api/v2?status=404", "/", "/apix", "/home"):
            async with s.get(f"http://127.0.0.1:{router.port}{path}") as r:
                await r.read()
    # The general (httptools) path: dribbled, and an absolute-form target.
    data = await _in_pieces(router.port, b"GET /checkout/b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    data = await _in_pieces(router.port, b"GET http://h/api/z HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    snap = validate(router.snapshot())
    v = snap["variants"]["main"]
    by_route = v["by_route"]
    assert {k: r["requests"] for k, r in by_route.items()} == {"checkout": 3, "api": 3, "other": 3}
    assert by_route["api"]["outcomes"]["4xx"] == 1 and by_route["api"]["outcomes"]["2xx"] == 2
    assert sum(r["requests"] for r in by_route.values()) == v["requests"] == 9
    assert sum(r["latency"]["count"] for r in by_route.values()) == v["latency"]["count"]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{router.admin_port}/metrics") as r:
            text = await r.text()
    assert 'bakeoff_requests_total{outcome="2xx",route="checkout",variant="main"} 3.0' in text
    assert 'bakeoff_request_duration_seconds_count{route="other",variant="main"} 3.0' in text
    # Merging two routers' snapshots adds per route too.
    merged = merge_snapshots([snap, copy.deepcopy(snap)])["variants"]["main"]
    assert merged["by_route"]["api"]["requests"] == 6 and merged["requests"] == 18


async def test_without_routes_nothing_changes(upstreams, make_router):
    (a,) = await upstreams("main")
    router = await make_router([a])
    assert router.request_routes is None
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{router.port}/checkout") as r:
            await r.read()
        async with s.get(f"http://127.0.0.1:{router.admin_port}/metrics") as r:
            text = await r.text()
    assert "by_route" not in router.snapshot()["variants"]["main"]
    assert 'bakeoff_requests_total{outcome="2xx",variant="main"} 1.0' in text and "route=" not in text


@pytest.mark.parametrize(
    "routes, message",
    [
        ([{"name": "other", "match": "/o*"}], "reserved"),
        ([{"name": f"r{i}", "match": f"/{i}"} for i in range(65)], "at most 64"),
        ([{"name": "a", "match": "/a"}, {"name": "a", "match": "/b"}], "appears twice"),
        ([{"name": "Bad!", "match": "/a"}], "routes[0].name"),
        ([{"name": "a", "match": ""}], "routes[0].match"),
        ([{"name": "a", "match": "/a", "extra": 1}], "unknown field routes[0].extra"),
    ],
)
def test_bad_routes_are_refused_naming_the_field(routes, message):
    with pytest.raises(ConfigError, match="router.yaml") as e:
        RouterConfig.from_dict({"routes": routes}, origin="router.yaml")
    assert message in str(e.value)


def test_validate_checks_by_route_and_accepts_older_snapshots():
    from bakeoff.router.stats import RouterStats

    stats = RouterStats("r", ("checkout", "other"))
    v = stats.variant("main")
    v.record_response(200, 0.01)
    v.by_route[0].record_response(200, 0.01)  # type: ignore[index]
    snap = validate(stats.snapshot())
    bad = copy.deepcopy(snap)
    bad["variants"]["main"]["by_route"]["other"]["requests"] = 5
    with pytest.raises(SnapshotError, match="variants.main.by_route: requests add up to 6, more than"):
        validate(bad)
    old = copy.deepcopy(snap)
    del old["variants"]["main"]["by_route"]
    del old["variants"]["main"]["outcomes"]["upgraded"]  # a router from before outcome upgraded
    merged = merge_snapshots([old, snap])["variants"]["main"]
    assert merged["outcomes"]["upgraded"] == 0 and set(merged["outcomes"]) == set(OUTCOMES)
    assert merged["by_route"]["checkout"]["requests"] == 1  # only what reported routes
    validate(merge_snapshots([old, snap]))


async def test_routes_can_be_swapped_through_put_routes_without_losing_counts(upstreams, make_router):
    (a,) = await upstreams("main")
    router = await make_router([a], routes=[{"name": "checkout", "match": "/checkout*"}])
    url = f"http://127.0.0.1:{router.port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/checkout") as r:
            await r.read()
        body = {
            "variants": [{"name": "main", "upstreams": [a.address], "weight": 1}],
            "routes": [{"name": "api", "match": "/api/*"}],
        }
        admin = f"http://127.0.0.1:{router.admin_port}/-/routes"
        async with s.put(admin, json=body, headers={"Authorization": "Bearer test-token"}) as r:
            assert r.status == 200
        for path in ("/api/x", "/checkout"):
            async with s.get(f"{url}{path}") as r:
                await r.read()
        bad = dict(body, routes=[{"name": "other", "match": "/x"}])
        async with s.put(admin, json=bad, headers={"Authorization": "Bearer test-token"}) as r:
            assert r.status == 400 and "reserved" in (await r.json())["error"]
    by_route = validate(router.snapshot())["variants"]["main"]["by_route"]
    # checkout keeps its count from before the swap; /checkout now counts as other.
    assert {k: v["requests"] for k, v in by_route.items()} == {"checkout": 1, "other": 1, "api": 1}
