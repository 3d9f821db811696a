"""Real upstream servers and a real router on 127.0.0.1 for the router tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from bakeoff.controller.platforms.local import free_port
from bakeoff.router.config import RouterConfig
from bakeoff.router.server import Router
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
SEEN = web.AppKey("seen", list)


class Upstream:
    """An aiohttp application on an ephemeral port that says who it is."""

    def __init__(self, name: str, app: web.Application | None = None) -> None:
        self.name = name
        self.app = app or echo_app(name)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.seen: list[dict] = []
        self.app[SEEN] = self.seen

    async def start(self, port: int = 0) -> Upstream:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def echo_app(name: str) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        request.app[SEEN].append(
            {
                "path": request.path_qs,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body_len": len(body),
            }
        )
        metric = request.query.get("metric")
        headers = {"X-Upstream": name}
        if metric is not None:
            headers["Bakeoff-Metric-revenue"] = metric
        if "status" in request.query:
            return web.Response(status=int(request.query["status"]), headers=headers)
        return web.Response(text=f"{name} {request.method} {request.path_qs} {len(body)}", headers=headers)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.fixture
async def upstreams():
    started: list[Upstream] = []

    async def make(*names: str) -> list[Upstream]:
        out = []
        for n in names:
            u = await Upstream(n).start()
            started.append(u)
            out.append(u)
        return out

    yield make
    for u in started:
        await u.stop()


@pytest.fixture
async def make_router():
    routers: list[Router] = []

    async def make(ups, weights=None, **config) -> Router:
        weights = weights or [1] * len(ups)
        data = {
            "listen": "127.0.0.1:0",
            "admin": "127.0.0.1:0",
            "token": "test-token",
            "variants": [{"name": u.name, "upstreams": [u.address], "weight": w} for u, w in zip(ups, weights)],
        }
        data.update(config)
        router = Router(RouterConfig.from_dict(data, origin="test"))
        await router.start()
        routers.append(router)
        return router

    yield make
    for r in routers:
        await r.stop(drain_timeout=1)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A seeded mutation of ``data``: flipped, inserted, deleted and truncated bytes (the fuzz tests' input)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        pos = rng.randrange(len(b) + 1)
        if op < 0.3 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op < 0.5:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        elif op < 0.7:
            del b[pos : pos + rng.randint(1, 10)]
        elif op < 0.85:
            b[pos:pos] = rng.choice([b"\r\n", b"\n", b":", b" ", b"\x00", b"Content-Length: 99999\r\n"])
        else:
            b = b[:pos]
    return bytes(b)


async def raw_exchange(port: int, payload: bytes, read_timeout: float = 3.0) -> bytes:
    """Send raw bytes, return everything read until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    chunks = []
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not data:
                break
            chunks.append(data)
    except TimeoutError:
        pass
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return b"".join(chunks)


class RouterProcess:
    """`bakeoff router` as a real subprocess."""

    def __init__(self, tmp_path: Path, config: dict) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        config = {"listen": f"127.0.0.1:{self.port}", "admin": f"127.0.0.1:{self.admin_port}", **config}
        self.config_path = tmp_path / "router.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp_path / "router.log"

    def start(self, *extra: str) -> RouterProcess:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bakeoff", "--log-json", "router", "--config", str(self.config_path), *extra],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited early:\n{self.log_path.read_text()}")
            for port in (self.admin_port, self.port):
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
            return True

        eventually(listening, what=f"the router to listen on {self.port} and {self.admin_port}", retry=(OSError,))
        return self

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def router_process(tmp_path):
    procs: list[RouterProcess] = []

    def make(config: dict) -> RouterProcess:
        p = RouterProcess(tmp_path, config)
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.stop()


async def get_json(url: str, **kw) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, **kw) as r:
            return r.status, await r.json(content_type=None)


def accept_in_threads(sock: socket.socket, serve: Callable[[socket.socket, int], None]) -> None:
    """Serve each connection ``sock`` accepts on a thread of its own: ``serve(conn, n)``, n = 1, 2, ...

    A test's threaded server (a raw h2c peer, say) stops accepting when ``sock`` is closed."""

    def accept() -> None:
        n = 0
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            n += 1
            threading.Thread(target=serve, args=(conn, n), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
