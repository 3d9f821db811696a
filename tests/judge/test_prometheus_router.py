"""The Prometheus source on the real path: router -> Prometheus scrape -> PromQL -> judge."""

from __future__ import annotations

import asyncio
import random
import subprocess

import aiohttp
from aiohttp import web

from bakeoff.controller.platforms.local import free_port
from bakeoff.judge.sources import make_source
from bakeoff.router.config import RouterConfig
from bakeoff.router.server import Router
from tests.judge.conftest import fetch_until, wait_ready


async def _variant_app(error_every: int, delay: float) -> tuple[web.AppRunner, int]:
    counter = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        counter["n"] += 1
        await asyncio.sleep(delay * random.random())  # a variant's latency
        if error_every and counter["n"] % error_every == 0:
            return web.Response(status=500, text="boom")
        return web.Response(text="ok", headers={"Bakeoff-Metric-conversion": str(counter["n"] % 2)})

    app = web.Application()
    app.router.add_get("/{t:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def test_prometheus_scraping_a_real_router_gives_the_routers_numbers(tmp_path, prometheus_binary):
    good, good_port = await _variant_app(0, 0.002)
    bad, bad_port = await _variant_app(10, 0.02)
    router = Router(
        RouterConfig.from_dict(
            {
                "listen": "127.0.0.1:0",
                "admin": "127.0.0.1:0",
                "variants": [
                    {"name": "mainline", "upstreams": [f"127.0.0.1:{good_port}"], "weight": 1},
                    {"name": "v2", "upstreams": [f"127.0.0.1:{bad_port}"], "weight": 1},
                ],
            }
        )
    )
    await router.start()
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: bakeoff\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{router.admin_port}']\n"
    )
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    src = make_source([f"prometheus+http://127.0.0.1:{prom_port}?selector=job%3D%22bakeoff%22"])
    try:
        await wait_ready(f"http://127.0.0.1:{prom_port}", proc)
        async with aiohttp.ClientSession() as s:

            async def user() -> None:
                for _ in range(100):
                    async with s.get(f"http://127.0.0.1:{router.port}/") as r:
                        await r.read()

            await asyncio.gather(*(user() for _ in range(20)))
        want = router.snapshot()["variants"]

        def caught_up(snap: dict) -> bool:
            # Requests and business metrics are separate series; wait until a scrape holds both.
            for n, v in want.items():
                g = snap["variants"].get(n, {})
                if g.get("requests") != v["requests"]:
                    return False
                if g.get("metrics", {}).get("conversion", {}).get("count") != v["metrics"]["conversion"]["count"]:
                    return False
            return True

        got = await fetch_until(src, caught_up, timeout=30)
        for name, v in want.items():
            g = got["variants"][name]
            assert g["outcomes"] == v["outcomes"]
            assert g["latency"]["count"] == v["latency"]["count"]
            assert g["metrics"]["conversion"]["count"] == v["metrics"]["conversion"]["count"]
        assert got["variants"]["v2"]["outcomes"]["5xx"] == want["v2"]["outcomes"]["5xx"] > 50
    finally:
        await src.close()
        proc.terminate()
        proc.wait(timeout=10)
        await router.stop(drain_timeout=1)
        await good.cleanup()
        await bad.cleanup()
