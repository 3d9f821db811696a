"""One router process: the traffic listener, the upstream pools, the routes.

``Router`` is also the in-process API the tests and ``bakeoff run`` use::

    router = Router(RouterConfig.from_dict({...}))
    await router.start()          # binds router.port and router.admin_port
    router.set_routes(specs)      # atomic table swap
    await router.stop()           # drains in-flight requests
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog

from bakeoff.contracts.snapshot import OTHER_ROUTE
from bakeoff.router.config import RouterConfig, RouteSpec, VariantSpec
from bakeoff.router.downstream import ClientConnection, RouterSettings
from bakeoff.router.h2_downstream import AlpnDispatch, H2Client, tls_context
from bakeoff.router.h2_upstream import H2UpstreamPool
from bakeoff.router.routing import RequestRoutes, RouteTable
from bakeoff.router.stats import RouterStats
from bakeoff.router.stickiness import StickyKeySource, sticky_key_source
from bakeoff.router.tracing import Tracer
from bakeoff.router.upstream import UpstreamPool

if TYPE_CHECKING:
    from bakeoff.router.admin import AdminServer

log = structlog.get_logger("bakeoff.router")
# Why HTTP/2 client connections were closed by a limit or for bad framing (docs/http2.md).
H2_COUNTERS = ("protocol_errors", "refused_streams", "oversize_headers", "rapid_resets")


def _setting(name: str) -> property:
    """A Router attribute kept in its RouterSettings, the object the compiled hot path reads."""

    def get(self: Router) -> Any:
        return getattr(self.settings, name)

    def set(self: Router, value: Any) -> None:
        setattr(self.settings, name, value)

    return property(get, set, doc=f"{name} (stored in Router.settings, read by every request)")


class Router:
    # The settings every request reads live in one compiled object (downstream.RouterSettings)
    # that each connection holds; these properties keep them Router attributes for everyone else.
    routes: RouteTable = _setting("routes")  # type: ignore[assignment]
    request_routes: RequestRoutes | None = _setting("request_routes")  # type: ignore[assignment]
    tracer: Tracer | None = _setting("tracer")  # type: ignore[assignment]
    sticky: StickyKeySource | None = _setting("sticky")  # type: ignore[assignment]
    sticky_header: bytes | None = _setting("sticky_header")  # type: ignore[assignment]
    override_header: bytes = _setting("override_header")  # type: ignore[assignment]
    override_enabled: bool = _setting("override_enabled")  # type: ignore[assignment]
    max_header_bytes: int = _setting("max_header_bytes")  # type: ignore[assignment]
    draining: bool = _setting("draining")  # type: ignore[assignment]
    expose_variant: bool = _setting("expose_variant")  # type: ignore[assignment]
    pool: UpstreamPool = _setting("pool")  # type: ignore[assignment]
    stats: RouterStats = _setting("stats")  # type: ignore[assignment]

    def __init__(self, config: RouterConfig, *, router_id: str | None = None, reuse_port: bool = False) -> None:
        self.settings = RouterSettings()
        self.config = config
        # Per-route statistics only when routes are configured: None keeps the
        # hot path at one attribute test per request.
        self.stats = RouterStats(router_id)
        self.request_routes: RequestRoutes | None = None
        self.set_request_routes(config.routes)
        # Tracing (bakeoff.router.tracing) only with a tracing block: None keeps the hot path at one test.
        self.tracer = Tracer(config.tracing, self.stats.route_names) if config.tracing is not None else None
        self.routes = RouteTable(config.variants, version=1 if config.variants else 0)
        for v in self.routes.variants:
            self.stats.variant(v.name)
        self.override_enabled = config.override_enabled
        self.override_header = config.override_header.lower().encode("latin-1")
        self.expose_variant = config.expose_variant
        self._set_sticky(sticky_key_source(config))
        self.max_header_bytes = config.max_header_bytes
        self.connect_timeout = config.connect_timeout
        self.read_timeout = config.read_timeout
        self.idle_timeout = config.idle_timeout
        self.head_timeout = config.head_timeout
        self.finish_on_client_abort = config.on_client_abort == "finish"
        self.pool = UpstreamPool(config.max_idle_per_upstream)
        self.reuse_port = reuse_port
        self.draining = False
        self.clients: set[ClientConnection] = set()
        # HTTP/2 (bakeoff.router.h2_downstream): its clients, its upstream connections, its limits' counts.
        self.h2_clients: set[H2Client] = set()
        self.h2_pool = H2UpstreamPool(self)
        self.h2_counters = dict.fromkeys(H2_COUNTERS, 0)
        self._server: asyncio.Server | None = None
        self._admin: AdminServer | None = None
        self._sweeper: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    def _set_sticky(self, sticky: StickyKeySource | None) -> None:
        self.sticky = sticky
        self.sticky_header = sticky.header if sticky is not None else None

    def set_stickiness(self, kind: str | None, name: str | None = None) -> None:
        """Where sticky keys come from from now on: ("header"|"cookie", NAME), or None for none.

        The routing table is left as it is: rendezvous hashing depends only on the key's bytes and
        the weights, so a user whose key is the same under the new source keeps their variant.
        Requests already being parsed finish with the key source they started with.
        """
        import dataclasses

        self.config = dataclasses.replace(
            self.config,
            sticky_header=name if kind == "header" else None,
            sticky_cookie=name if kind == "cookie" else None,
        )
        self._set_sticky(sticky_key_source(self.config))

    # -- routes ----------------------------------------------------------
    def set_routes(self, specs: Iterable[VariantSpec], version: int | None = None) -> RouteTable:
        """Swap in a new table; requests already routed finish where they are."""
        table = RouteTable(specs, version=self.routes.version + 1 if version is None else version)
        for v in table.variants:
            self.stats.variant(v.name)
        old = {v.name: v.weight for v in self.routes.variants}
        self.routes = table
        log.info("routes applied", version=table.version, weights=table.weights, previous=old)
        return table

    def set_request_routes(self, specs: tuple[RouteSpec, ...]) -> None:
        """Swap the per-route statistics patterns (config routes, or a Bakeoff's spec.routing.routes)."""
        if not specs:
            self.request_routes = None  # counts so far stay in the snapshot
            return
        names = (*(s.name for s in specs), OTHER_ROUTE)
        self.request_routes = RequestRoutes(specs, self.stats.route_slots(names))

    def snapshot(self) -> dict:
        snap = self.stats.snapshot(self.routes.weights, self.routes.version)
        if any(self.h2_counters.values()):
            snap["http2"] = dict(self.h2_counters)  # HTTP/2 connections closed by a limit, by reason
        if self.tracer is not None and self.tracer.recording:
            snap["sources"][0]["tracing"] = self.tracer.counts()
        return snap

    # -- life cycle --------------------------------------------------------
    async def start(self, *, admin: bool = True, sock: socket.socket | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        host, port = self.config.listen
        factory: Callable[[], asyncio.Protocol] = lambda: ClientConnection(self)  # noqa: E731
        tls = None
        if self.config.tls_cert and self.config.tls_key:
            # TLS: ALPN picks h2 or http/1.1 per connection (cleartext HTTP/2 is found by its preface).
            tls = tls_context(self.config.tls_cert, self.config.tls_key)
            http1 = factory
            factory = lambda: AlpnDispatch(self, http1)  # noqa: E731
        if sock is not None:
            self._server = await self.loop.create_server(factory, sock=sock, backlog=2048, ssl=tls)
        else:
            self._server = await self.loop.create_server(
                factory, host, port, reuse_port=self.reuse_port or None, backlog=2048, ssl=tls
            )
        self._sweeper = self.loop.create_task(self._sweep())
        if self.tracer is not None:
            self.tracer.start(self.loop)
        if admin:
            from bakeoff.router.admin import LocalBackend, start_admin

            self._admin = await start_admin(
                LocalBackend(self),
                self.config.admin,
                self.config.token,
                sticky=self.sticky is not None,
                events_token=self.config.events_token,
            )
        log.info(
            "router listening",
            traffic=f"{host}:{self.port}",
            admin=f"{self.config.admin[0]}:{self.admin_port}" if self._admin else None,
            variants=self.routes.weights,
        )

    async def _sweep(self) -> None:
        """Timeouts for every connection, checked on one clock instead of per-request timers."""
        interval = max(0.01, min(1.0, self.read_timeout / 4, self.idle_timeout / 4, self.head_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            for client in list(self.clients):
                client.sweep(now)
            for h2client in list(self.h2_clients):
                h2client.sweep(now)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def admin_port(self) -> int | None:
        return self._admin.port if self._admin is not None else None

    async def stop(self, drain_timeout: float | None = None) -> bool:
        """Stop accepting, let in-flight requests finish within the bound, close.

        Returns True when every request in flight finished in time.
        """
        timeout = self.config.drain_timeout if drain_timeout is None else drain_timeout
        self.draining = True
        self.pool.draining = True
        if self._server is not None:
            self._server.close()
        clients: list[ClientConnection | H2Client] = [*self.clients, *self.h2_clients]
        for client in clients:
            client.close_if_idle()
        deadline = self.loop.time() + timeout
        while (self.clients or self.h2_clients) and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
            clients = [*self.clients, *self.h2_clients]
            for client in clients:
                client.close_if_idle()
        clean = not self.clients and not self.h2_clients
        if self._sweeper is not None:
            self._sweeper.cancel()
        for client in list(self.clients):
            client._close()
        for h2client in list(self.h2_clients):
            h2client.close()
        self.pool.close_all()
        self.h2_pool.close_all()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.stop)
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        log.info("router stopped", drained=clean)
        return clean
