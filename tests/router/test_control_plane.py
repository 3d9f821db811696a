"""The admin port: token, route swaps under load, snapshot, metrics, events."""

from __future__ import annotations

import asyncio
import random

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from bakeoff.contracts.histogram import decode_counts
from bakeoff.contracts.snapshot import OUTCOMES, merge_snapshots
from bakeoff.router.stats import RouterStats

AUTH = {"Authorization": "Bearer test-token"}


async def test_routes_need_the_bearer_token(upstreams, make_router):
    ups = await upstreams("main", "b")
    router = await make_router(ups)
    url = f"http://127.0.0.1:{router.admin_port}/-/routes"
    body = {"variants": [{"name": "main", "upstreams": [ups[0].address], "weight": 1}]}
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            assert r.status == 401
        async with s.put(url, json=body) as r:
            assert r.status == 401
        async with s.put(url, json=body, headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        assert router.routes.weights == {"main": 1.0, "b": 1.0}
        async with s.put(url, json=body, headers=AUTH) as r:
            assert r.status == 200
            assert (await r.json())["version"] == 2
        assert router.routes.weights == {"main": 1.0}
        async with s.get(url, headers=AUTH) as r:
            assert (await r.json())["variants"][0]["name"] == "main"
        bad = {"variants": [{"name": "main", "upstreams": ["nohost"], "weight": 1}]}
        async with s.put(url, json=bad, headers=AUTH) as r:
            assert r.status == 400
            assert "variants[0].upstreams[0] must be host:port" in (await r.json())["error"]
        async with s.put(url, data=b"{not json", headers=AUTH) as r:
            assert r.status == 400
    assert router.routes.version == 2  # rejected bodies changed nothing


async def test_routes_are_read_only_without_a_configured_token(upstreams, make_router, monkeypatch):
    monkeypatch.delenv("BAKEOFF_ROUTER_TOKEN", raising=False)
    (a,) = await upstreams("main")
    router = await make_router([a], token=None)
    async with aiohttp.ClientSession() as s:
        async with s.put(f"http://127.0.0.1:{router.admin_port}/-/routes", json={"variants": []}) as r:
            assert r.status == 403
            assert "no token is configured" in (await r.json())["error"]


async def test_route_swaps_under_load_fail_no_request(upstreams, make_router):
    ups = await upstreams("main", "b", "c")
    router = await make_router(ups, weights=[1, 0, 0])
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load(s: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with s.post(f"http://127.0.0.1:{router.port}/", data=b"p" * 2000) as r:
                await r.read()
                statuses.append(r.status)

    rng = random.Random(7)
    tables = []
    for _ in range(40):
        chosen = rng.sample(ups, rng.randint(1, 3))
        tables.append([{"name": u.name, "upstreams": [u.address], "weight": rng.randint(1, 10)} for u in chosen])

    async with aiohttp.ClientSession() as s:
        workers = [asyncio.create_task(load(s)) for _ in range(16)]
        async with aiohttp.ClientSession() as admin:
            for t in tables:
                async with admin.put(
                    f"http://127.0.0.1:{router.admin_port}/-/routes", json={"variants": t}, headers=AUTH
                ) as r:
                    assert r.status == 200
                await asyncio.sleep(0.03)  # route changes spread over the load, not all at once
        stop.set()
        await asyncio.gather(*workers)
    assert len(statuses) > 500
    assert set(statuses) == {200}
    assert router.routes.version == 41
    served = {u.name: len(u.seen) for u in ups}
    assert all(n > 0 for n in served.values()), served


async def test_snapshot_and_metrics_agree_and_parse(upstreams, make_router):
    ups = await upstreams("main", "b")
    router = await make_router(ups)
    async with aiohttp.ClientSession() as s:
        for i in range(60):
            async with s.get(f"http://127.0.0.1:{router.port}/x?metric={i % 7}&status={200 + (i % 3) * 100}") as r:
                await r.read()
        async with s.get(f"http://127.0.0.1:{router.admin_port}/-/snapshot") as r:
            snap = await r.json()
        async with s.get(f"http://127.0.0.1:{router.admin_port}/metrics") as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
    assert snap["format"] == "bakeoff.snapshot/v1"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (sm.labels["variant"], sm.labels["outcome"]): sm.value
        for sm in families["bakeoff_requests"].samples
        if sm.name == "bakeoff_requests_total"
    }
    total = 0
    for name, v in snap["variants"].items():
        total += v["requests"]
        assert sum(v["outcomes"].values()) == v["requests"]
        for outcome in OUTCOMES:
            assert requests[(name, outcome)] == v["outcomes"][outcome]
        count = next(
            sm.value
            for sm in families["bakeoff_request_duration_seconds"].samples
            if sm.name.endswith("_count") and sm.labels["variant"] == name
        )
        assert count == v["latency"]["count"] == sum(decode_counts(v["latency"]))
        revenue = next(
            sm.value
            for sm in families["bakeoff_metric_sum"].samples
            if sm.labels["variant"] == name and sm.labels["metric"] == "revenue"
        )
        assert revenue == v["metrics"]["revenue"]["sum"]
    assert total == 60
    assert {k for k in (o for _, o in requests)} == set(OUTCOMES)


async def test_events_are_attributed_to_the_keys_variant(upstreams, make_router):
    ups = await upstreams("main", "b")
    router = await make_router(ups, stickiness={"header": "X-User-Id"})
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer test-token"}) as s:
        assigned = {}
        for u in range(40):
            async with s.get(f"http://127.0.0.1:{router.port}/", headers={"X-User-Id": f"u{u}"}) as r:
                assigned[f"u{u}"] = r.headers["X-Bakeoff-Variant"]
        events = [{"key": k, "metric": "purchase", "value": 10} for k in assigned]
        async with s.post(f"http://127.0.0.1:{router.admin_port}/-/events", json=events) as r:
            assert r.status == 202
            results = (await r.json())["results"]
        assert [res["variant"] for res in results] == list(assigned.values())
        async with s.post(
            f"http://127.0.0.1:{router.admin_port}/-/events", json={"variant": "b", "metric": "purchase", "value": "x"}
        ) as r:
            assert r.status == 422
        async with s.post(f"http://127.0.0.1:{router.admin_port}/-/events", json={"metric": "m", "value": 1}) as r:
            assert r.status == 400
            assert "give 'key'" in (await r.json())["error"]
    snap = router.snapshot()["variants"]
    for name in ("main", "b"):
        n = sum(1 for v in assigned.values() if v == name)
        assert snap[name]["metrics"].get("purchase", {"count": 0})["count"] == n
    assert snap["b"]["invalid_metrics"] == 1


async def test_health_and_readiness(upstreams, make_router):
    (a,) = await upstreams("main")
    router = await make_router([a])
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{router.admin_port}/-/healthz") as r:
            assert r.status == 200
        async with s.get(f"http://127.0.0.1:{router.admin_port}/-/readyz") as r:
            assert r.status == 200
        router.draining = True
        async with s.get(f"http://127.0.0.1:{router.admin_port}/-/readyz") as r:
            assert r.status == 503
        router.draining = False


# -- merging ------------------------------------------------------------------

request = st.tuples(
    st.sampled_from(["main", "b", "c"]),
    st.sampled_from([200, 201, 302, 404, 500, -1, -2]),
    st.floats(min_value=1e-5, max_value=30.0),
    st.one_of(st.none(), st.floats(min_value=-100, max_value=100)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(request, max_size=200), st.integers(min_value=1, max_value=5), st.randoms())
def test_merging_replica_snapshots_equals_one_router(requests, replicas, rnd):
    whole = RouterStats("whole")
    parts = [RouterStats(f"r{i}") for i in range(replicas)]
    for name, status, seconds, metric in requests:
        for stats in (whole, parts[rnd.randrange(replicas)]):
            v = stats.variant(name)
            if status < 0:
                v.record_outcome(5 if status == -1 else 6, seconds)
            else:
                v.record_response(status, seconds)
            if metric is not None:
                v.record_metric("m", metric)
    merged = merge_snapshots([p.snapshot() for p in parts])
    expected = whole.snapshot()
    assert len(merged["sources"]) == replicas
    assert merged["variants"].keys() == expected["variants"].keys()
    for name, v in expected["variants"].items():
        m = merged["variants"][name]
        assert m["requests"] == v["requests"]
        assert m["outcomes"] == v["outcomes"]
        assert decode_counts(m["latency"]) == decode_counts(v["latency"])
        assert abs(m["latency"]["sum"] - v["latency"]["sum"]) < 1e-6
        for key in ("count",):
            assert m["metrics"].get("m", {}).get(key) == v["metrics"].get("m", {}).get(key)
