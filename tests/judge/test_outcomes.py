"""What counts: proportions from reported values (issue 10 item 9) and upgrades (contract).

``kind: proportion`` is the *sum* of the reported 0/1 values over the
requests: ``Bakeoff-Metric-conversion: 0`` is a request that did not
convert.  (It used to count reported values, so a service reporting 0 on
every request looked like it converted on all of them.)  A 101 upgrade is
never an error and not in the error rate's denominator.
"""

from __future__ import annotations

import asyncio
import copy

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Stream
from bakeoff.router.config import RouterConfig
from bakeoff.router.server import Router

from .conftest import make_config


async def _service(converts_every: int) -> tuple[web.AppRunner, int]:
    """Reports conversion on every request: 1 on every ``converts_every``-th, else 0."""
    n = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        n["n"] += 1
        value = "1" if converts_every and n["n"] % converts_every == 0 else "0"
        return web.Response(text="ok", headers={"Bakeoff-Metric-conversion": value})

    app = web.Application()
    app.router.add_get("/{t:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def test_proportion_is_the_sum_of_reported_values_in_a_real_router_snapshot():
    main_app, main_port = await _service(2)  # converts half the time
    cand_app, cand_port = await _service(0)  # reports conversion: 0 on every request
    router = Router(
        RouterConfig.from_dict(
            {
                "listen": "127.0.0.1:0",
                "admin": "127.0.0.1:0",
                "variants": [
                    {"name": "mainline", "upstreams": [f"127.0.0.1:{main_port}"], "weight": 1},
                    {"name": "never", "upstreams": [f"127.0.0.1:{cand_port}"], "weight": 1},
                ],
            }
        )
    )
    await router.start()
    try:
        async with aiohttp.ClientSession() as s:

            async def user(u: int) -> None:
                for _ in range(40):
                    async with s.get(f"http://127.0.0.1:{router.port}/", headers={"X-User-Id": f"u{u}"}) as r:
                        await r.read()

            await asyncio.gather(*(user(u) for u in range(30)))
            async with s.get(f"http://127.0.0.1:{router.admin_port}/-/snapshot") as r:
                snap = await r.json()
    finally:
        await router.stop()
        await main_app.cleanup()
        await cand_app.cleanup()
    never = snap["variants"]["never"]
    # the router reports every value: as many as requests, summing to 0
    assert never["metrics"]["conversion"]["count"] == never["requests"] > 100
    assert never["metrics"]["conversion"]["sum"] == 0
    cfg = make_config(minSamples=100, guardrails=[{"metric": "error_rate", "maxIncrease": 0.01}])
    _, verdict = step(JudgeState.new(cfg), snap, 1.0)
    mv = verdict.variants["never"].metrics["conversion"]
    assert mv.candidate == 0.0
    main = snap["variants"]["mainline"]
    assert mv.control == pytest.approx(main["metrics"]["conversion"]["sum"] / main["requests"])
    assert 0.4 < mv.control < 0.6
    assert mv.estimate < 0 and mv.state == "worse"  # never converting is worse than converting half the time


def _with_upgrades(snap, name, upgraded):
    s = copy.deepcopy(snap)
    v = s["variants"][name]
    v["requests"] += upgraded
    v["outcomes"]["upgraded"] = upgraded
    return s


def test_upgrades_are_not_errors_and_not_in_the_denominator():
    cfg = make_config(minSamples=100, guardrails=[{"metric": "error_rate", "maxIncrease": 0.01}], objective=None)
    stream = Stream({"mainline": Arm(error_rate=0.02), "ws": Arm(error_rate=0.02)}, np.random.default_rng(3))
    stream.advance(1000)
    snap = stream.snapshot()
    _, plain = step(JudgeState.new(cfg), snap, 1.0)
    _, upgraded = step(JudgeState.new(cfg), _with_upgrades(snap, "ws", 4000), 1.0)
    p, u = plain.variants["ws"].metrics["error_rate"], upgraded.variants["ws"].metrics["error_rate"]
    errors = snap["variants"]["ws"]["outcomes"]["5xx"]
    # 4000 WebSocket upgrades neither add errors nor dilute the rate
    assert u.candidate == p.candidate == pytest.approx(errors / 1000)
    assert upgraded.variants["ws"].requests == 5000
    # an older router's snapshot, without the key: treated as 0
    old = copy.deepcopy(snap)
    for v in old["variants"].values():
        v["outcomes"].pop("upgraded", None)
    _, older = step(JudgeState.new(cfg), old, 1.0)
    o = older.variants["ws"].metrics["error_rate"]
    assert o.candidate == p.candidate and older.variants["ws"].requests == 1000
