"""The local platform: variants as processes (or existing URLs) on this machine, the router in-process.

- A workload with ``command`` is started with ``{port}`` replaced by a free
  port (also given as ``$PORT``), in a process group of its own, its output
  going to ``<state dir>/logs/<variant>.log``.  A leading ``python`` or
  ``python3`` is this interpreter (so variants see bakeoff's virtualenv).
  On Linux the child also gets SIGTERM if bakeoff itself dies.
- A workload with ``url`` is only health-checked.
- Health: ``GET healthPath`` must answer 200 within ``startTimeout`` before
  the workload counts as ready; afterwards a process that exits, or a URL
  that fails three health checks in a row, is reported as failed.
- Retiring a workload takes it out of nothing by itself (the controller has
  already routed around it); after ``drain`` seconds its process group gets
  SIGTERM, then SIGKILL after ``kill_grace`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from bakeoff.common.logs import bind_variant
from bakeoff.contracts.resources import DEFAULT_STICKY_HEADER
from bakeoff.controller.resources import Route, Workload

if TYPE_CHECKING:
    from bakeoff.router.server import Router

log = structlog.get_logger("bakeoff.controller.local")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - not Linux: nothing to do
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Workload:
    def __init__(self, name: str, spec: Workload, labels: dict[str, Any]) -> None:
        self.name = name
        self.spec = spec
        self.labels = labels
        self.proc: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None
        self.ready = False
        self.failed: str | None = None
        self.retiring = False
        self.health_failures = 0
        self.task: asyncio.Task | None = None
        self.log = bind_variant(log, labels.get("bakeoff", ""), name, labels.get("commit"))


class LocalPlatform:
    def __init__(
        self,
        *,
        listen: str = "127.0.0.1:8080",
        admin: str = "127.0.0.1:8081",
        sticky_header: str | None = DEFAULT_STICKY_HEADER,
        sticky_cookie: str | None = None,
        state_dir: Path | str = ".",
        base_dir: Path | str = ".",
        drain: float = 2.0,
        kill_grace: float = 5.0,
        health_interval: float = 2.0,
        routes: tuple[Route, ...] = (),
        bakeoff: str | None = None,
    ) -> None:
        self.listen, self.admin = listen, admin
        self.bakeoff = bakeoff  # bakeoff.name on the router's spans (tracing from the OTEL_* environment)
        self.sticky_header, self.sticky_cookie = sticky_header, sticky_cookie
        self.state_dir = Path(state_dir)
        self.base_dir = Path(base_dir)
        self.drain = drain
        self.kill_grace = kill_grace
        self.health_interval = health_interval
        self.routes = routes
        self.router: Router | None = None
        self.workloads: dict[str, _Workload] = {}
        self._session: aiohttp.ClientSession | None = None
        self._monitor: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._weights: dict[str, float] = {}
        self._addresses: dict[str, str] | None = None

    # -- life cycle -------------------------------------------------------
    async def open(self) -> None:
        from bakeoff.router.config import RouterConfig
        from bakeoff.router.server import Router

        r = self.router = Router(RouterConfig.from_dict(self.router_config(), origin="bakeoff run router"))
        await r.start()
        self._addresses = {
            "listen": f"{r.config.listen[0]}:{r.port}",
            "admin": f"{r.config.admin[0]}:{r.admin_port}",
            "url": f"http://{r.config.listen[0]}:{r.port}",
            "events_url": f"http://{r.config.admin[0]}:{r.admin_port}/-/events",
        }
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        self._monitor = asyncio.create_task(self._watch())

    def router_config(self) -> dict[str, Any]:
        """The in-process router's configuration (router/config.py's schema)."""
        cfg: dict[str, Any] = {"listen": self.listen, "admin": self.admin, "timeouts": {"drain": max(0.5, self.drain)}}
        if self.sticky_header:
            cfg["stickiness"] = {"header": self.sticky_header}
        elif self.sticky_cookie:
            cfg["stickiness"] = {"cookie": self.sticky_cookie}
        if self.routes:
            # per-route statistics (the shared routes contract): name + path glob, first match wins
            cfg["routes"] = [{"name": r.name, "match": r.match} for r in self.routes]
        from bakeoff.router.tracing import endpoint_from_env

        if endpoint_from_env() is not None:
            # OpenTelemetry's own variables turn the router's tracing on (docs/observability.md):
            # OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER_ARG.
            raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1")
            try:
                ratio = float(raw)
            except ValueError:
                raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be a sample ratio from 0 to 1, got {raw!r}") from None
            cfg["tracing"] = {"sampleRatio": ratio, **({"bakeoff": self.bakeoff} if self.bakeoff else {})}
        return cfg

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for t in list(self._tasks):
            t.cancel()
        for w in self.workloads.values():
            if w.task is not None:
                w.task.cancel()
        if self.router is not None:
            await self.router.stop(drain_timeout=min(2.0, self.drain))
        procs = [w for w in self.workloads.values() if w.proc is not None]
        await asyncio.gather(*(self._terminate(w) for w in procs))
        if self._session is not None:
            await self._session.close()

    # -- workloads --------------------------------------------------------
    def start(self, name: str, workload: Workload, labels: dict[str, Any]) -> None:
        old = self.workloads.get(name)
        if old is not None and not old.failed and not old.retiring:
            return
        w = _Workload(name, workload, labels)
        self.workloads[name] = w
        w.task = asyncio.create_task(self._bring_up(w))

    def _command(self, w: _Workload, port: int) -> list[str]:
        cmd = [a.replace("{port}", str(port)) for a in w.spec.command or ()]
        if cmd and cmd[0] in ("python", "python3"):
            cmd[0] = sys.executable
        return cmd

    async def _bring_up(self, w: _Workload) -> None:
        spec = w.spec
        try:
            if spec.command:
                port = free_port()
                w.address = ("127.0.0.1", port)
                cmd = self._command(w, port)
                logs = self.state_dir / "logs"
                logs.mkdir(parents=True, exist_ok=True)
                out = open(logs / f"{w.name}.log", "ab")
                env = {**os.environ, "PORT": str(port), **dict(spec.env)}
                cwd = spec.working_dir
                if cwd is not None and not os.path.isabs(cwd):
                    cwd = str(self.base_dir / cwd)
                try:
                    w.proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=cwd,
                        start_new_session=True,
                        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                    )
                except OSError as e:
                    raise _StartFailed(f"cannot start {cmd[0]!r}: {e.strerror or e}") from None
                finally:
                    out.close()
                w.log.info("workload started", pid=w.proc.pid, port=port, command=cmd)
            else:
                hostport = (spec.url or "").split("://", 1)[1]  # resources: exactly one of command or url
                host, _, p = hostport.rpartition(":")
                w.address = (host or hostport, int(p) if p else 80)
            await self._wait_healthy(w)
            w.ready = True
            w.log.info("workload healthy", address=f"{w.address[0]}:{w.address[1]}")
        except _StartFailed as e:
            self._fail(w, str(e))
        except asyncio.CancelledError:
            raise

    async def _wait_healthy(self, w: _Workload) -> None:
        deadline = time.monotonic() + w.spec.start_timeout
        got = "no answer yet"
        while True:
            if w.proc is not None and w.proc.poll() is not None:
                raise _StartFailed(
                    f"exited with code {w.proc.returncode} before it became healthy; see logs/{w.name}.log"
                )
            ok, got = await self._check(w)
            if ok:
                return
            if time.monotonic() > deadline:
                where = f"; see logs/{w.name}.log" if w.proc is not None else f" ({w.spec.url})"
                raise _StartFailed(
                    f"never became healthy within {w.spec.start_timeout:g}s "
                    f"(GET {w.spec.health_path} never answered 200; last check: {got}){where}"
                )
            await asyncio.sleep(0.1)

    async def _check(self, w: _Workload) -> tuple[bool, str]:
        """One health check: (answered 200, what it got: "GET /health answered 404", "timed out", ...)."""
        assert self._session is not None and w.address is not None
        host, port = w.address
        path = w.spec.health_path
        if w.spec.protocol == "h2c":  # a gRPC server answers no HTTP/1.1 GET: a connection it accepts will do
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            except (OSError, TimeoutError) as e:
                return False, f"cannot connect to {host}:{port}: {e}"
            writer.close()
            return True, f"{host}:{port} accepted a connection"
        try:
            async with self._session.get(f"http://{host}:{port}{path}", timeout=aiohttp.ClientTimeout(total=1.0)) as r:
                await r.read()
                return r.status == 200, f"GET {path} answered {r.status}"
        except TimeoutError:
            return False, f"GET {path} timed out after 1s"
        except aiohttp.ClientConnectorError as e:
            refused = isinstance(e.os_error, ConnectionRefusedError)
            return False, (
                f"connection refused on {host}:{port}" if refused else f"cannot connect to {host}:{port}: {e.os_error}"
            )
        except (aiohttp.ClientError, OSError) as e:
            return False, f"GET {path} failed: {e.__class__.__name__}: {e}"

    def _fail(self, w: _Workload, why: str) -> None:
        if w.failed is None and not w.retiring:
            w.failed, w.ready = why, False
            w.log.warning("workload failed", reason=why)
            if w.proc is not None:
                self._spawn(self._terminate(w))

    async def _watch(self) -> None:
        """Notice processes that exit and URLs that stop answering."""
        last_health = time.monotonic()
        while True:
            await asyncio.sleep(0.2)
            for w in list(self.workloads.values()):
                if w.proc is not None and w.ready and not w.retiring and w.proc.poll() is not None:
                    self._fail(w, f"process exited with code {w.proc.returncode}")
            if time.monotonic() - last_health >= self.health_interval:
                last_health = time.monotonic()
                for w in [w for w in self.workloads.values() if w.ready and not w.retiring and w.proc is None]:
                    ok, got = await self._check(w)
                    if ok:
                        w.health_failures = 0
                    else:
                        w.health_failures += 1
                        if w.health_failures >= 3:
                            self._fail(w, f"{w.spec.health_path} failed 3 health checks in a row (last: {got})")

    def ready(self) -> frozenset[str]:
        return frozenset(n for n, w in self.workloads.items() if w.ready and not w.failed and not w.retiring)

    def failures(self) -> dict[str, str]:
        return {n: w.failed for n, w in self.workloads.items() if w.failed}

    def retire(self, name: str, reason: str) -> None:
        w = self.workloads.get(name)
        if w is None or w.retiring:
            return
        w.retiring, w.ready = True, False
        w.log.info("workload retiring", reason=reason, drain_s=self.drain)
        if w.task is not None and not w.task.done():
            w.task.cancel()

        async def later() -> None:
            await asyncio.sleep(self.drain)
            await self._terminate(w)

        if w.proc is not None:
            self._spawn(later())

    def _spawn(self, coro) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _terminate(self, w: _Workload) -> None:
        proc = w.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.kill_grace
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        # the group may hold children even after the leader exited
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1)

    # -- traffic ----------------------------------------------------------
    def set_weights(self, weights: dict[str, float]) -> None:
        from bakeoff.router.config import VariantSpec

        specs = []
        for name, share in weights.items():
            w = self.workloads.get(name)
            if w is None or w.address is None or share <= 0:
                continue
            specs.append(
                VariantSpec(name, (w.address,), float(share), protocol=w.spec.protocol, version=w.labels.get("commit"))
            )
        if specs and self.router is not None:
            self.router.set_routes(specs)
            self._weights = dict(weights)

    def snapshot(self) -> dict[str, Any]:
        assert self.router is not None
        return self.router.snapshot()

    def pids(self) -> dict[str, int]:
        """The root process of every running workload (its whole tree is the variant's resource cost)."""
        return {n: w.proc.pid for n, w in self.workloads.items() if w.proc is not None and w.proc.poll() is None}

    def describe(self) -> dict[str, Any]:
        return {
            "platform": "local",
            "router": self._addresses,
            "workloads": {
                n: {
                    "pid": w.proc.pid if w.proc else None,
                    "pgid": w.proc.pid if w.proc else None,
                    "address": f"{w.address[0]}:{w.address[1]}" if w.address else None,
                    "ready": w.ready,
                    "failed": w.failed,
                    "retiring": w.retiring,
                    "exited": (w.proc.poll() is not None) if w.proc else None,
                }
                for n, w in self.workloads.items()
            },
        }


class _StartFailed(Exception):
    pass
