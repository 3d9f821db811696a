"""``--workers N``: N router processes on one traffic port, one admin view.

Each worker is a full Router bound with SO_REUSEPORT (the kernel spreads new
connections across them) that serves its own control plane on a private
Unix socket.  The supervising process owns the public admin port: it merges
the workers' snapshots, fans route changes out to all of them, and restarts
a worker that dies.  A dead worker's last snapshot is kept and added in, so
the merged counters never go backwards because one process crashed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from bakeoff.contracts.snapshot import merge_snapshots
from bakeoff.router.admin import start_admin
from bakeoff.router.config import RouterConfig, RouteSpec, VariantSpec
from bakeoff.router.routing import RouteTable
from bakeoff.router.stats import RouterStats

log = structlog.get_logger("bakeoff.router")


class WorkerBackend:
    """Control backend that speaks to every worker over its Unix socket."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    def ready(self) -> bool:
        return self.sup.ready()

    async def _call(self, worker: Worker, method: str, path: str, body: Any = None) -> Any:
        s = worker.client()
        headers = {"Authorization": f"Bearer {self.sup.internal_token}"}
        async with s.request(method, f"http://worker{path}", json=body, headers=headers) as r:
            data = await r.json()
            if r.status >= 400 and r.status != 422:
                raise RuntimeError(f"worker {worker.index}: {method} {path}: {data}")
            return data

    async def snapshot(self) -> dict[str, Any]:
        live = [w for w in self.sup.workers if w.alive()]
        results = await asyncio.gather(*(self._call(w, "GET", "/-/snapshot") for w in live), return_exceptions=True)
        parts = []
        for w, r in zip(live, results):
            if isinstance(r, BaseException):
                if w.last_snapshot is not None:
                    parts.append(w.last_snapshot)
                continue
            w.last_snapshot = r
            parts.append(r)
        parts.extend(self.sup.retired)
        if not parts:
            return self.sup.empty_snapshot()
        merged = merge_snapshots(parts)
        merged["routes"] = {"version": self.sup.table.version, "weights": self.sup.table.weights}
        return merged

    async def routes(self) -> dict[str, Any]:
        return self.sup.table.to_json()

    async def put_routes(
        self,
        specs: tuple[VariantSpec, ...],
        version: int | None = None,
        request_routes: tuple[RouteSpec, ...] | None = None,
    ) -> dict[str, Any]:
        table = self.sup.apply_routes(specs, version)
        body: dict[str, Any] = {"variants": table.to_json()["variants"], "version": table.version}
        if request_routes is not None:
            # Workers started later take them from their config.
            self.sup.config = dataclasses.replace(self.sup.config, routes=request_routes)
            body["routes"] = [{"name": r.name, "match": r.match} for r in request_routes]
        live = [w for w in self.sup.workers if w.alive()]
        await asyncio.gather(*(self._call(w, "PUT", "/-/routes", body) for w in live))
        return table.to_json()

    async def set_stickiness(self, kind: str | None, name: str | None) -> dict[str, Any]:
        """Every worker takes the new key source; workers started later take it from the config."""
        self.sup.config = dataclasses.replace(
            self.sup.config,
            sticky_header=name if kind == "header" else None,
            sticky_cookie=name if kind == "cookie" else None,
        )
        body = {"stickiness": {kind: name} if kind else None}
        live = [w for w in self.sup.workers if w.alive()]
        await asyncio.gather(*(self._call(w, "PUT", "/-/stickiness", body) for w in live))
        return body

    async def record_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Attribution is deterministic, so any one worker can record it.
        worker = next((w for w in self.sup.workers if w.alive()), None)
        if worker is None:
            return [{"error": "no worker is running"} for _ in events]
        data = await self._call(worker, "POST", "/-/events", events)
        return data["results"]


class Worker:
    def __init__(self, index: int, socket_path: Path) -> None:
        self.index = index
        self.socket = socket_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_snapshot: dict[str, Any] | None = None
        self.restarts = 0
        # One keep-alive client per worker process: the supervisor asks every
        # worker for its snapshot twice a second, and a new session and
        # connection per call cost the supervisor and each worker a connect,
        # an accept and the session's set-up every time.
        self._session: aiohttp.ClientSession | None = None
        self._session_pid = 0

    def client(self) -> aiohttp.ClientSession:
        """The session to this worker's control socket, made anew for a restarted process."""
        pid = self.proc.pid if self.proc is not None else 0
        s = self._session
        if s is None or s.closed or self._session_pid != pid:
            if s is not None and not s.closed:
                asyncio.ensure_future(s.close())
            s = self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket)), timeout=aiohttp.ClientTimeout(total=5)
            )
            self._session_pid = pid
        return s

    async def close_client(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, config: RouterConfig, config_path: str | None, wrap_backend: Any = None) -> None:
        self.config = config
        self.wrap_backend = wrap_backend  # e.g. router.cluster.ClusterBackend around the admin's backend
        self.config_path = config_path
        self.table = RouteTable(config.variants, version=1 if config.variants else 0)
        self.runtime = Path(tempfile.mkdtemp(prefix="bakeoff-router-"))
        os.chmod(self.runtime, 0o700)
        self.workers = [Worker(i, self.runtime / f"worker-{i}.sock") for i in range(config.workers)]
        self.retired: list[dict[str, Any]] = []
        self.stopping = False
        self._port_holder: socket.socket | None = None
        self.port = config.listen[1]
        self.internal_token = secrets.token_hex(16)

    def ready(self) -> bool:
        return not self.stopping and any(w.alive() and w.socket.exists() for w in self.workers)

    def empty_snapshot(self) -> dict[str, Any]:
        return RouterStats("supervisor").snapshot(self.table.weights, self.table.version) | {"sources": []}

    def apply_routes(self, specs: tuple[VariantSpec, ...], version: int | None) -> RouteTable:
        self.table = RouteTable(specs, version=self.table.version + 1 if version is None else version)
        self._write_routes()
        return self.table

    def _write_routes(self) -> None:
        tmp = self.runtime / "routes.json.tmp"
        tmp.write_text(json.dumps(self.table.to_json()))
        tmp.replace(self.runtime / "routes.json")

    def _reserve_port(self) -> None:
        # With port 0 every worker would get its own port: pick one here and
        # keep it bound (not listening) so the workers can all share it.
        host, port = self.config.listen
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR as every listener has: without it the bind fails while
        # connections of a router that just stopped on this port are in TIME_WAIT.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((host, port))
        except OSError:
            s.close()
            raise
        self.port = s.getsockname()[1]
        self._port_holder = s

    def _spawn(self, worker: Worker) -> None:
        if worker.socket.exists():
            worker.socket.unlink()
        cmd = [
            sys.executable, "-m", "bakeoff.router.worker_main",
            "--config-json", json.dumps(_config_for_worker(self.config, self.port)),
            "--routes-file", str(self.runtime / "routes.json"),
            "--control-socket", str(worker.socket),
            "--worker-id", f"{socket.gethostname()}-w{worker.index}",
        ]  # fmt: skip
        worker.proc = subprocess.Popen(cmd, env=os.environ | {"BAKEOFF_WORKER_TOKEN": self.internal_token})

    async def run(self, stop: asyncio.Event) -> int:
        admin = None
        # Everything after the runtime directory exists sits in this try, so a
        # start that fails (a port in use) leaves no empty directory behind.
        try:
            self._reserve_port()
            self._write_routes()
            for w in self.workers:
                self._spawn(w)
            admin_backend: Any = WorkerBackend(self)
            if self.wrap_backend is not None:
                admin_backend = self.wrap_backend(admin_backend)
            admin = await start_admin(admin_backend, self.config.admin, self.config.token,
                                      sticky=bool(self.config.sticky_header or self.config.sticky_cookie),
                                      events_token=self.config.events_token)  # fmt: skip
            log.info("router supervisor", workers=len(self.workers), traffic=f"{self.config.listen[0]}:{self.port}",
                     admin=f"{self.config.admin[0]}:{admin.port}")  # fmt: skip
            backend = WorkerBackend(self)
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except TimeoutError:
                    pass
                for w in self.workers:
                    if w.proc is not None and w.proc.poll() is not None and not stop.is_set():
                        log.warning("router worker died; restarting", worker=w.index, code=w.proc.returncode)
                        if w.last_snapshot is not None:
                            self.retired.append(w.last_snapshot)
                            w.last_snapshot = None
                        w.restarts += 1
                        self._spawn(w)
                # Keep each worker's latest snapshot so a crash loses at most 0.5 s of counts.
                if any(w.alive() for w in self.workers):
                    try:
                        await backend.snapshot()
                    except Exception:  # a worker mid-start: next round
                        pass
        finally:
            self.stopping = True
            await self._stop_workers()
            for w in self.workers:
                await w.close_client()
            if admin is not None:
                await admin.stop()
            if self._port_holder is not None:
                self._port_holder.close()
            shutil.rmtree(self.runtime, ignore_errors=True)
        return 0

    async def _stop_workers(self) -> None:
        for w in self.workers:
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = asyncio.get_running_loop().time() + self.config.drain_timeout + 5
        for w in self.workers:
            while w.alive() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            if w.alive():
                w.proc.kill()  # type: ignore[union-attr]
                w.proc.wait()  # type: ignore[union-attr]


def _config_for_worker(config: RouterConfig, port: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "listen": f"{config.listen[0]}:{port}",
        "exposeVariant": config.expose_variant,
        "override": {"enabled": config.override_enabled, "header": config.override_header},
        "timeouts": {
            "connect": config.connect_timeout,
            "read": config.read_timeout,
            "drain": config.drain_timeout,
            "idle": config.idle_timeout,
            "head": config.head_timeout,
        },  # fmt: skip
        "limits": {"maxHeaderBytes": config.max_header_bytes, "maxIdlePerUpstream": config.max_idle_per_upstream},
        "onClientAbort": config.on_client_abort,
    }
    if config.routes:
        out["routes"] = [{"name": r.name, "match": r.match} for r in config.routes]
    if config.sticky_header:
        out["stickiness"] = {"header": config.sticky_header}
    elif config.sticky_cookie:
        out["stickiness"] = {"cookie": config.sticky_cookie}
    return out
