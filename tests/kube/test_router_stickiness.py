"""A router started before its Bakeoff follows the Bakeoff's stickiness live (issue 16 item 13).

The documented install order starts the routers (helm) before the Bakeoff exists, so a router
could only start with the CRD's default (header X-User-Id). Real router subprocesses against the
real API server, one with --workers 2; upstreams on this machine's address.
"""

from __future__ import annotations

import collections
import json

import aiohttp
import pytest

from tests.conftest import eventually_async

from .conftest import GROUP, VERSION
from .test_router_kube import apis, host_ip, router, table, upstream, wait_routes  # noqa: F401 - fixtures

USERS = 60


async def variants_seen(r, headers_for, rounds: int = 4) -> dict[str, collections.Counter]:
    """For each user, which variants answered over `rounds` requests."""
    seen: dict[str, collections.Counter] = {f"u{i}": collections.Counter() for i in range(USERS)}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        for _ in range(rounds):
            for user in seen:
                async with s.get(f"{r.url}/p", headers=headers_for(user)) as resp:
                    assert resp.status == 200, await resp.text()
                    seen[user][await resp.text()] += 1
    return seen


def assignment(seen: dict[str, collections.Counter]) -> dict[str, str]:
    split = {u: sorted(c) for u, c in seen.items() if len(c) != 1}
    assert not split, f"{len(split)} of {USERS} users were split between variants: {split}"
    return {u: next(iter(c)) for u, c in seen.items()}


async def wait_log(r, text: str, timeout: float = 30) -> None:
    try:
        await eventually_async(lambda: text in r.logs(), what=f"{text!r} logged", timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}:\n{r.logs()}") from None


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_router_started_before_its_bakeoff_takes_its_stickiness(apis, upstream, router, host_ip, workers):  # noqa: F811
    name = f"sticky{workers}"
    a, b = await upstream("mainline"), await upstream("fast")
    apis.put_slice(f"{name}-mainline-1", f"{name}-mainline", host_ip, a.port)
    apis.put_slice(f"{name}-fast-1", f"{name}-fast", host_ip, b.port)
    r = await router(name, *(["--workers", str(workers)] if workers > 1 else []))  # no Bakeoff yet
    await wait_log(r, "Bakeoff not found")

    apis.create_bakeoff(name, stickiness={"cookie": "sess"})
    apis.set_routing(name, 1, [("mainline", f"{name}-mainline", 0.5), ("fast", f"{name}-fast", 0.5)])
    await wait_routes(r, lambda d: set(table(d)) == {"mainline", "fast"}, timeout=30)
    await wait_log(r, '"stickiness": "cookie: sess"')
    # before: the default header was still in force, the cookie was ignored and every user split 50/50
    by_cookie = assignment(await variants_seen(r, lambda u: {"Cookie": f"sess={u}"}))
    counts = collections.Counter(by_cookie.values())
    assert set(counts) == {"mainline", "fast"}, counts

    # a change of stickiness moves as few users as possible: the same key under the new source
    # keeps its variant (the table is untouched); the change is logged as an event
    apis.custom.patch_namespaced_custom_object(
        GROUP, VERSION, "router-kube", "bakeoffs", name, {"spec": {"routing": {"stickiness": {"cookie": None, "header": "X-Session"}}}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    await wait_log(r, '"stickiness": "header: X-Session"')
    by_header = assignment(await variants_seen(r, lambda u: {"X-Session": u}))
    moved = [u for u in by_cookie if by_header[u] != by_cookie[u]]
    assert not moved, f"{len(moved)} of {USERS} users moved"
    events = [json.loads(line) for line in r.logs().splitlines() if '"stickiness changed"' in line]
    assert [(e["previous"], e["stickiness"]) for e in events][-1] == ("cookie: sess", "header: X-Session"), events
    print(f"\nworkers={workers}: by cookie {dict(counts)}; after the switch to a header, {len(moved)} moved")
