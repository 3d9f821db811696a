"""The router as a real process: config errors, SIGTERM drain, workers, big bodies."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time

import aiohttp
from aiohttp import web

from tests.conftest import eventually_async
from tests.router.conftest import ROOT, SEEN, Upstream, get_json

MB = 1024 * 1024


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bakeoff", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_invalid_config_file_is_refused_naming_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:0\nvariants:\n  - name: Main!\n    upstreams: [127.0.0.1:1]\n")
    r = run_cli("router", "--config", str(bad))
    assert r.returncode == 2
    assert f"{bad}: variants[0].name must be lower-case" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("router", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "missing.yaml: cannot read" in r.stderr
    bad.write_text("variants: [\n")
    r = run_cli("router", "--config", str(bad))
    assert r.returncode == 2 and "not valid YAML" in r.stderr


async def test_sigterm_drains_in_flight_requests_and_exits_0(router_process):
    app = web.Application()
    app[SEEN] = []

    in_flight = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight
        in_flight += 1
        await asyncio.sleep(1.0)  # a slow upstream: requests are still in flight at SIGTERM
        return web.Response(text="finished")

    app.router.add_get("/", slow)
    up = await Upstream("slow", app).start()
    try:
        rp = router_process(
            {"variants": [{"name": "slow", "upstreams": [up.address], "weight": 1}], "timeouts": {"drain": 5}}
        ).start()
        async with aiohttp.ClientSession() as s:
            pending = [asyncio.create_task(s.get(f"http://127.0.0.1:{rp.port}/")) for _ in range(5)]
            await eventually_async(lambda: in_flight, until=lambda n: n == 5, what="5 requests at the upstream")
            rp.proc.send_signal(signal.SIGTERM)
            responses = await asyncio.gather(*pending)
            assert [r.status for r in responses] == [200] * 5
            assert [await r.text() for r in responses] == ["finished"] * 5
        code = await asyncio.get_running_loop().run_in_executor(None, rp.proc.wait, 10)
        assert code == 0
        assert b"router stopped" in rp.log_path.read_bytes()
    finally:
        await up.stop()


async def test_workers_share_the_port_and_merge_their_statistics(upstreams, router_process):
    ups = await upstreams("main", "b")
    rp = router_process(
        {
            "token": "t",
            "workers": 2,
            "variants": [{"name": u.name, "upstreams": [u.address], "weight": 1} for u in ups],
        }
    ).start()
    n = 400
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{rp.port}/") as r:
                assert r.status == 200

    async def snapshot() -> dict:
        status, snap = await get_json(f"http://127.0.0.1:{rp.admin_port}/-/snapshot")
        assert status == 200
        return snap

    def requests(snap: dict) -> int:
        return sum(v["requests"] for v in snap["variants"].values())

    snap = await eventually_async(
        snapshot, until=lambda s: requests(s) >= n, what=f"the merged snapshot to count {n} requests"
    )
    assert len({src["pid"] for src in snap["sources"]}) == 2
    assert requests(snap) == n
    # Route changes reach every worker.
    async with aiohttp.ClientSession() as s:
        body = {"variants": [{"name": "b", "upstreams": [ups[1].address], "weight": 1}]}
        async with s.put(
            f"http://127.0.0.1:{rp.admin_port}/-/routes", json=body, headers={"Authorization": "Bearer t"}
        ) as r:
            assert r.status == 200
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for _ in range(100):
            async with s.get(f"http://127.0.0.1:{rp.port}/") as r:
                assert r.headers["X-Bakeoff-Variant"] == "b"
    # A worker that dies is restarted and its counts are kept (the supervisor
    # reads every worker twice a second, so wait for a read with the new requests first).
    await eventually_async(
        snapshot, until=lambda s: requests(s) >= n + 100, what=f"the merged snapshot to count {n + 100} requests"
    )
    worker_pids = [src["pid"] for src in snap["sources"]]
    os.kill(worker_pids[0], signal.SIGKILL)
    after = await eventually_async(
        snapshot,
        until=lambda s: {src["pid"] for src in s["sources"]} - set(worker_pids),
        what=f"a new worker in place of {worker_pids[0]}",
        timeout=60,
    )
    assert requests(after) >= n + 100
    live_pids = {src["pid"] for src in after["sources"]} - set(worker_pids)
    assert live_pids, "a new worker should have been started"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{rp.port}/") as r:
            assert r.status == 200
    assert rp.stop() == 0


async def test_50mb_bodies_stream_both_ways_in_bounded_memory(router_process):
    app = web.Application(client_max_size=1 << 31)
    app[SEEN] = []

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        total = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            digest.update(chunk)
            total += len(chunk)
        return web.Response(text=f"{total} {digest.hexdigest()}")

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        block = bytes(range(256)) * 256  # 64 KiB
        sent = 0
        while sent < size:
            await resp.write(block[: size - sent])
            sent += min(len(block), size - sent)
        await resp.write_eof()
        return resp

    app.router.add_post("/up", upload)
    app.router.add_get("/down", download)
    up = await Upstream("big", app).start()
    try:
        rp = router_process({"variants": [{"name": "big", "upstreams": [up.address], "weight": 1}]}).start()
        baseline_kb = rp.rss_kb()
        peak_kb = baseline_kb
        size = 60 * MB

        async def sample_rss(stop: asyncio.Event) -> None:
            nonlocal peak_kb
            while not stop.is_set():
                peak_kb = max(peak_kb, rp.rss_kb())
                await asyncio.sleep(0.02)  # the sampling interval

        block = os.urandom(MB)
        expect = hashlib.sha256()
        for _ in range(size // MB):
            expect.update(block)

        async def body():
            for _ in range(size // MB):
                yield block

        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(stop))
        t0 = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            async with s.post(f"http://127.0.0.1:{rp.port}/up", data=body()) as r:
                assert await r.text() == f"{size} {expect.hexdigest()}"
            received = 0
            digest = hashlib.sha256()
            async with s.get(f"http://127.0.0.1:{rp.port}/down?size={size}") as r:
                assert r.status == 200
                async for chunk in r.content.iter_chunked(1 << 16):
                    received += len(chunk)
                    digest.update(chunk)
                    if received < 4 * MB:
                        await asyncio.sleep(0.001)  # a slow reader at first: the router must not buffer
        stop.set()
        await sampler
        assert received == size
        ref = hashlib.sha256()
        blk = bytes(range(256)) * 256
        for off in range(0, size, len(blk)):
            ref.update(blk[: size - off])
        assert digest.hexdigest() == ref.hexdigest()
        growth_mb = (peak_kb - baseline_kb) / 1024
        assert growth_mb < 16, f"router RSS grew {growth_mb:.1f} MB while streaming {size // MB} MB each way"
        assert time.monotonic() - t0 < 120
    finally:
        await up.stop()
