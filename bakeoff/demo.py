"""``bakeoff demo``: the router in front of three real example services, under load.

It starts examples/catalog's three implementations as processes, the router
in front of them with a sticky weighted split, and simulated users; then it
shows live per-variant statistics read from the router's own snapshot.  (The
full loop with the judge and promotion replaces this once ``bakeoff run``
exists.)  Ctrl-C stops everything; no process is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "catalog"
VARIANTS = (("mainline", "mainline.py", 60), ("cached", "cached.py", 20), ("flaky", "flaky.py", 20))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--users", type=int, default=32, help="concurrent simulated users (default 32)")
    p.add_argument("--headless", action="store_true", help="print lines instead of a live table")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace) -> int:
    import uvloop

    procs: list[subprocess.Popen] = []
    try:
        return uvloop.run(_demo(args, procs))
    except KeyboardInterrupt:
        return 130
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


async def _wait_healthy(port: int, proc: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"variant {name} exited with code {proc.returncode} before it was healthy")
            try:
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"variant {name} was not healthy within 20 s")


async def _demo(args: argparse.Namespace, procs: list[subprocess.Popen]) -> int:
    from router.config import RouterConfig
    from router.server import Router

    variants = []
    for name, script, weight in VARIANTS:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / script), "--port", str(port)])
        procs.append(proc)
        variants.append({"name": name, "upstreams": [f"127.0.0.1:{port}"], "weight": weight, "_proc": proc})
    for v in variants:
        await _wait_healthy(int(v["upstreams"][0].rsplit(":", 1)[1]), v["_proc"], v["name"])
    config = RouterConfig.from_dict(
        {
            "listen": "127.0.0.1:0",
            "admin": "127.0.0.1:0",
            "stickiness": {"header": "X-User-Id"},
            "variants": [{k: v[k] for k in ("name", "upstreams", "weight")} for v in variants],
        },
        origin="demo",
    )
    router = Router(config)
    await router.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    load = asyncio.create_task(_users(router.port, args.users, stop))
    try:
        await _show(router, args, stop)
    finally:
        stop.set()
        await load
        await router.stop(drain_timeout=2)
    final = router.snapshot()
    summary = _rows(final, None, 0)
    print(json.dumps({"duration_s": args.duration, "variants": summary}))
    return 0


async def _users(port: int, users: int, stop: asyncio.Event) -> None:
    """Simulated shoppers: each has an id (sticky) and browses products."""

    async def user(i: int, s: aiohttp.ClientSession) -> None:
        rng = random.Random(i)
        uid = f"user-{i}-{rng.getrandbits(32):x}"
        while not stop.is_set():
            pid = rng.randrange(500)
            try:
                async with s.get(f"http://127.0.0.1:{port}/products/{pid}", headers={"X-User-Id": uid}) as r:
                    await r.read()
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
            if rng.random() < 0.02:  # a new visitor takes this seat
                uid = f"user-{i}-{rng.getrandbits(32):x}"

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=users)) as s:
        await asyncio.gather(*(user(i, s) for i in range(users)))


def _rows(snap: dict[str, Any], prev: dict[str, Any] | None, dt: float) -> list[dict[str, Any]]:
    from router.histogram import decode_counts, quantile_from_counts

    rows = []
    weights = snap["routes"]["weights"]
    for name, v in snap["variants"].items():
        o = v["outcomes"]
        n = v["requests"]
        errors = o["5xx"] + o["connect_error"] + o["timeout"]
        counts = decode_counts(v["latency"])
        conv = v["metrics"].get("conversion", {"count": 0})
        rate = None
        if prev is not None and dt > 0 and name in prev["variants"]:
            rate = (n - prev["variants"][name]["requests"]) / dt
        rows.append(
            {
                "variant": name,
                "weight": weights.get(name, 0),
                "requests": n,
                "rps": rate,
                "error_rate": errors / n if n else None,
                "p50_ms": quantile_from_counts(counts, 0.5) * 1000 if n else None,
                "p99_ms": quantile_from_counts(counts, 0.99) * 1000 if n else None,
                "conversion": conv["count"] / n if n else None,
            }
        )
    return rows


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


async def _show(router: Any, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console()
    live_view = console.is_terminal and not args.headless
    start = time.monotonic()
    prev, prev_t = None, start

    def table(rows: list[dict[str, Any]], elapsed: float) -> Table:
        t = Table(title=f"bakeoff demo: router on 127.0.0.1:{router.port}, {elapsed:4.0f}s / {args.duration:.0f}s")
        for col in ("variant", "weight", "requests", "req/s", "errors", "p50 ms", "p99 ms", "conversion"):
            t.add_column(col, justify="left" if col == "variant" else "right")
        for r in rows:
            t.add_row(
                r["variant"], _fmt(r["weight"], ".0f"), str(r["requests"]), _fmt(r["rps"], ".0f"),
                _fmt(r["error_rate"], ".2%"), _fmt(r["p50_ms"], ".2f"), _fmt(r["p99_ms"], ".2f"),
                _fmt(r["conversion"], ".2%"),
            )  # fmt: skip
        return t

    async def tick() -> bool:
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
        return not stop.is_set() and time.monotonic() - start < args.duration

    if live_view:
        with Live(table([], 0), console=console, refresh_per_second=4) as live:
            while await tick():
                now = time.monotonic()
                snap = router.snapshot()
                live.update(table(_rows(snap, prev, now - prev_t), now - start))
                prev, prev_t = snap, now
    else:
        last_print = start
        while await tick():
            now = time.monotonic()
            if now - last_print >= 5:
                snap = router.snapshot()
                for r in _rows(snap, prev, now - prev_t):
                    print(
                        f"t={now - start:5.1f}s variant={r['variant']} requests={r['requests']} "
                        f"rps={_fmt(r['rps'], '.0f')} errors={_fmt(r['error_rate'], '.2%')} "
                        f"p50_ms={_fmt(r['p50_ms'], '.2f')} p99_ms={_fmt(r['p99_ms'], '.2f')} "
                        f"conversion={_fmt(r['conversion'], '.2%')}",
                        flush=True,
                    )
                prev, prev_t, last_print = snap, now, now
