"""``bakeoff router --kubernetes``: the routing table comes from the API server.

The router watches one ``Bakeoff`` (``bakeoff.dev/v1alpha1``) and the
EndpointSlices of its namespace, and turns the Bakeoff's ``status.routing``
(written by the controller, docs/kubernetes.md) into a table:

* every entry of ``status.routing.variants`` with weight > 0 becomes a
  variant with that weight;
* its upstreams are the ready endpoints (``conditions.ready`` true or absent)
  of the EndpointSlices labelled ``kubernetes.io/service-name: <service>``,
  on the slice port named ``http`` (else the slice's only port, else the one
  equal to the entry's ``port``); that port's ``appProtocol`` (copied from
  the Service port) chooses how the router speaks to it: ``h2c``, ``grpc``
  or ``kubernetes.io/h2c`` is cleartext HTTP/2, anything else HTTP/1.1;
* a variant without any ready endpoint is left out (its sticky users fall
  back to the others by rendezvous hashing); when no variant is routable the
  previous table stays;
* the table's version is ``status.routing.version``; a table equal to the one
  being served (same version, weights and addresses) is not swapped in again;
* ``spec.routing.stickiness`` is followed live, like the weights: a router
  started before its Bakeoff (the documented install order) starts with the
  CRD's default and takes the Bakeoff's as soon as it sees it. The table is
  not touched, so a user whose key is the same under the new source keeps
  their variant (rendezvous hashing depends only on the key and the weights);
  each change is logged as event "stickiness changed".

The kubernetes client is synchronous: each watch is a ``WatchCache``
(bakeoff.common.watch, shared with the controller) running in a daemon thread
(list, then watch from the list's resourceVersion, resumed from the last one
seen when the server ends it; on 410 Gone list again at once; on any other
error list again after an exponential back-off), and hands what it holds
to the event loop, where the table is built and applied.  Nothing here ever
stops the router: while the API server is unreachable, or the Bakeoff is
missing, the last table keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog

from bakeoff.common.watch import WatchCache
from bakeoff.common.watch import short_error as _short_error
from bakeoff.contracts.resources import BAKEOFF_PLURAL as PLURAL
from bakeoff.contracts.resources import DEFAULT_STICKY_HEADER, GROUP, VERSION
from bakeoff.router.config import HEADER_RE, NAME_RE, ConfigError, RouteSpec, VariantSpec, parse_routes

log = structlog.get_logger("bakeoff.router")

SERVICE_LABEL = "kubernetes.io/service-name"
# The CRD's default for spec.routing.stickiness.
DEFAULT_STICKINESS: tuple[str, str] = ("header", DEFAULT_STICKY_HEADER)

Stickiness = tuple[str, str] | None  # ("header" | "cookie", name) or None


# A Service port's appProtocol values that mean cleartext HTTP/2 to the router (a gRPC server's).
H2C_APP_PROTOCOLS = frozenset(("h2c", "grpc", "kubernetes.io/h2c"))


@dataclass(frozen=True)
class SliceView:
    """What the router needs of one EndpointSlice."""

    service: str
    ports: tuple[tuple[str, int], ...]  # (name, port)
    addresses: tuple[str, ...]  # of the ready endpoints, sorted
    h2c_ports: frozenset[int] = frozenset()  # ports whose appProtocol is cleartext HTTP/2 (H2C_APP_PROTOCOLS)

    def port_for(self, wanted: int | None) -> int | None:
        named = [p for n, p in self.ports if n == "http"]
        if named:
            return named[0]
        if len(self.ports) == 1:
            return self.ports[0][1]
        return next((p for _, p in self.ports if p == wanted), None)


@dataclass(frozen=True)
class Table:
    version: int
    variants: tuple[VariantSpec, ...]


def slice_view(obj: dict[str, Any]) -> SliceView | None:
    """An EndpointSlice (a dict, as the API server sends it) reduced to service, ports and ready addresses."""
    service = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_LABEL)
    if not service:
        return None
    ports = tuple(
        (str(p.get("name") or ""), int(p["port"])) for p in (obj.get("ports") or []) if p.get("port") is not None
    )
    h2c = frozenset(
        int(p["port"])
        for p in (obj.get("ports") or [])
        if p.get("port") is not None and p.get("appProtocol") in H2C_APP_PROTOCOLS
    )
    addresses: set[str] = set()
    for ep in obj.get("endpoints") or []:
        ready = (ep.get("conditions") or {}).get("ready")
        if ready is None or ready is True:
            addresses.update(str(a) for a in ep.get("addresses") or [])
    return SliceView(service, ports, tuple(sorted(addresses)), h2c)


def slice_views(objs: list[dict[str, Any]]) -> dict[str, SliceView]:
    """EndpointSlices by name, those of a Service only."""
    views = {}
    for obj in objs:
        view = slice_view(obj)
        if view is not None:
            views[obj["metadata"]["name"]] = view
    return views


def stickiness_of(bakeoff: dict[str, Any]) -> Stickiness:
    """``spec.routing.stickiness`` of a Bakeoff: absent means the CRD's default, null means none."""
    routing = (bakeoff.get("spec") or {}).get("routing") or {}
    if "stickiness" not in routing:
        return DEFAULT_STICKINESS
    st = routing["stickiness"]
    if not st:
        return None
    if isinstance(st, dict) and len(st) == 1:
        ((kind, name),) = st.items()
        if kind in ("header", "cookie") and isinstance(name, str) and HEADER_RE.match(name):
            return kind, name
    raise ValueError(f"spec.routing.stickiness must be {{header: NAME}}, {{cookie: NAME}} or null, got {st!r}")


@dataclass(frozen=True)
class Mainline:
    """Where all traffic goes while there is no Bakeoff to split it: a variant name and a Service."""

    name: str
    service: str
    port: int | None = None


def parse_mainline_service(value: str, name: str = "mainline") -> Mainline:
    """``NAME[:PORT]`` of --mainline-service; ValueError says what is wrong."""
    service, sep, port = value.partition(":")
    if len(service) > 63 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", service):
        raise ValueError(f"--mainline-service: {service!r} is not a Service name (a DNS-1035 label)")
    if not sep:
        return Mainline(name, service)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--mainline-service: port {port!r} must be a number from 1 to 65535")
    return Mainline(name, service, int(port))


def mainline_of(bakeoff: dict[str, Any]) -> Mainline | None:
    """The mainline's entry in a Bakeoff's status.routing, if it has one."""
    status = bakeoff.get("status") or {}
    name = status.get("mainline") or ((bakeoff.get("spec") or {}).get("mainline") or {}).get("name") or "mainline"
    for entry in (status.get("routing") or {}).get("variants") or []:
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get("service"), str):
            port = entry.get("port")
            return Mainline(name, entry["service"], port if isinstance(port, int) else None)
    return None


def fallback_table(
    candidates: list[Mainline], slices: dict[str, SliceView], version: int
) -> tuple[Table | None, Mainline | None]:
    """Everything to the first mainline candidate with ready endpoints."""
    for m in candidates:
        upstreams: set[tuple[str, int]] = set()
        protocol = "http1"
        for s in slices.values():
            if s.service == m.service:
                port = s.port_for(m.port)
                if port is not None:
                    upstreams.update((a, port) for a in s.addresses)
                    if port in s.h2c_ports:
                        protocol = "h2c"
        if upstreams:
            return Table(version, (VariantSpec(m.name, tuple(sorted(upstreams)), 1.0, protocol),)), m
    return None, None


def build_table(bakeoff: dict[str, Any] | None, slices: dict[str, SliceView]) -> tuple[Table | None, str]:
    """The table for a Bakeoff and the namespace's slices, or None and why nothing is routable."""
    if bakeoff is None:
        return None, "the Bakeoff does not exist"
    routing = (bakeoff.get("status") or {}).get("routing")
    if not routing or not routing.get("variants"):
        return None, "the Bakeoff has no status.routing yet"
    by_service: dict[str, list[SliceView]] = {}
    for s in slices.values():
        by_service.setdefault(s.service, []).append(s)
    out = []
    missing = []
    for entry in routing.get("variants") or []:
        name, service = entry.get("name"), entry.get("service")
        weight = entry.get("weight") or 0
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            continue
        if not isinstance(name, str) or not NAME_RE.match(name) or not isinstance(service, str):
            log.warning("status.routing entry skipped: bad name or service", entry=entry)
            continue
        upstreams: set[tuple[str, int]] = set()
        protocol = "http1"
        for s in by_service.get(service, ()):
            port = s.port_for(entry.get("port"))
            if port is not None:
                upstreams.update((a, port) for a in s.addresses)
                if port in s.h2c_ports:
                    protocol = "h2c"
        if not upstreams:
            missing.append(name)
            continue
        commit = entry.get("commit")
        version = commit if isinstance(commit, str) and commit else None  # service.version on its spans
        out.append(VariantSpec(name, tuple(sorted(upstreams)), float(weight), protocol, version))
    if not out:
        if missing:
            return None, f"no ready endpoints for any variant ({', '.join(missing)})"
        return None, "status.routing gives no variant a weight above 0"
    return Table(int(routing.get("version") or 0), tuple(out)), (
        f"no ready endpoints for {', '.join(missing)}" if missing else ""
    )


# (variants, version, per-route statistics patterns or None to keep them)
ApplyFn = Callable[[tuple[VariantSpec, ...], int, "tuple[RouteSpec, ...] | None"], Awaitable[Any]]
# the new stickiness: ("header" | "cookie", name) or None
StickyFn = Callable[[Stickiness], Awaitable[Any]]


class ClusterSource:
    """Watches Bakeoff ``name`` and the EndpointSlices of ``namespace``; applies each new table."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        apply: ApplyFn,
        stickiness: Stickiness,
        mainline_service: Mainline | None = None,
        set_stickiness: StickyFn | None = None,
    ) -> None:
        self.api = api
        # Applies a new spec.routing.stickiness to the data plane; None: fixed at start (warn on a change).
        self.set_stickiness = set_stickiness
        self.wanted_stickiness: Stickiness = stickiness
        # Without a Bakeoff (not created yet, or deleted) all traffic goes to
        # the mainline: the Service named on the command line, else the last
        # mainline entry seen in status.routing.  Never a 503 for everyone.
        self.mainline_service = mainline_service
        self.last_mainline: Mainline | None = None
        self.last_version = 0
        self.request_routes: tuple[RouteSpec, ...] = ()  # spec.routing.routes, as last read
        self.applied_routes: tuple[RouteSpec, ...] | None = None
        self.namespace = namespace
        self.name = name
        self.apply = apply
        self.stickiness = stickiness
        self.bakeoff: dict[str, Any] | None = None
        self.listed = False  # the Bakeoff watch listed once: self.bakeoff is known
        self.slices_listed = False  # ...and the EndpointSlices watch
        self.slices: dict[str, SliceView] = {}
        self.applied: Table | None = None
        self.problem = "waiting for the API server"
        self._errors: dict[str, str] = {}  # watch -> last error, while it lasts
        self._warned: str | None = None
        self._warned_stickiness: Stickiness | str = stickiness
        self._dirty: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._caches: list[WatchCache] = []

    @property
    def where(self) -> str:
        return f"Bakeoff {self.namespace}/{self.name}"

    # -- life cycle ------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._dirty = asyncio.Event()
        self._task = self._loop.create_task(self._reconcile_forever())
        from kubernetes import client

        custom, discovery = client.CustomObjectsApi(self.api), client.DiscoveryV1Api(self.api)
        bakeoffs: WatchCache
        slices: WatchCache

        seen = [False]  # the first list was seen: a missing Bakeoff is warned about once

        def on_bakeoff() -> None:
            obj = bakeoffs.get(self.namespace, self.name)
            if obj is None and not seen[0]:
                log.warning("Bakeoff not found; waiting for it", bakeoff=self.name, namespace=self.namespace)
            seen[0] = True
            self._post(self._set_bakeoff, obj)

        def on_slices() -> None:
            self._post(self._set_slices, slice_views(slices.list()))

        common = {"logger": log, "log_fields": {"bakeoff": self.name, "namespace": self.namespace}}
        bakeoffs = WatchCache(
            "bakeoff",
            custom.list_namespaced_custom_object,
            on_bakeoff,
            on_error=self._error_poster("bakeoff"),
            **common,
            group=GROUP,
            version=VERSION,
            namespace=self.namespace,
            plural=PLURAL,
            field_selector=f"metadata.name={self.name}",
        )
        slices = WatchCache(
            "endpointslices",
            discovery.list_namespaced_endpoint_slice,
            on_slices,
            on_error=self._error_poster("endpointslices"),
            **common,
            namespace=self.namespace,
            label_selector=SERVICE_LABEL,
        )
        self._caches = [bakeoffs, slices]
        for c in self._caches:
            c.start()
        log.info("watching the API server", bakeoff=self.name, namespace=self.namespace)

    async def stop(self) -> None:
        for c in self._caches:
            c.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def not_ready_reason(self) -> str:
        if self.applied is not None:
            return ""
        errors = "; ".join(dict.fromkeys(v for _, v in sorted(self._errors.items())))
        if errors:
            host = getattr(getattr(self.api, "configuration", None), "host", "")
            return f"no routing table yet from {self.where}: API server {host}: {errors}"
        return f"no routing table yet from {self.where}: {self.problem}"

    # -- the event loop side ------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """From a watch thread: run fn(*args) on the event loop, then rebuild the table."""
        assert self._loop is not None
        if self._loop.is_closed():
            return

        def run() -> None:
            fn(*args)
            self._dirty.set()  # type: ignore[union-attr]

        try:
            self._loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _set_bakeoff(self, obj: dict[str, Any] | None) -> None:
        if obj is None and self.bakeoff is not None:
            log.warning(
                "Bakeoff deleted; all traffic to the mainline Service once its endpoints are known",
                bakeoff=self.name,
                namespace=self.namespace,
            )
        self.bakeoff = obj
        self.listed = True
        if obj is None:
            return
        raw_routes = ((obj.get("spec") or {}).get("routing") or {}).get("routes") or []
        try:
            self.request_routes = parse_routes(raw_routes, self.where, "spec.routing.routes")
        except ConfigError as e:
            log.warning("spec.routing.routes ignored", bakeoff=self.name, error=str(e))
        seen = mainline_of(obj)
        if seen is not None:
            self.last_mainline = seen
        version = ((obj.get("status") or {}).get("routing") or {}).get("version")
        if isinstance(version, int):
            self.last_version = max(self.last_version, version)
        try:
            st: Stickiness | str = stickiness_of(obj)
        except ValueError as e:
            st = str(e)
        if not isinstance(st, str) and self.set_stickiness is not None:
            self.wanted_stickiness = st  # applied by _reconcile, in order with the routing table
        elif isinstance(st, str) and self.set_stickiness is not None:
            if st != self._warned_stickiness:
                self._warned_stickiness = st
                log.warning("spec.routing.stickiness not applied; keeping the current one", bakeoff=self.name,
                            running=_fmt_sticky(self.stickiness), error=st)  # fmt: skip
        elif st == self.stickiness:
            self._warned_stickiness = st
        elif st != self._warned_stickiness:
            self._warned_stickiness = st
            log.warning("spec.routing.stickiness changed; restart the router to apply it",
                        bakeoff=self.name, running=_fmt_sticky(self.stickiness), wanted=_fmt_sticky(st))  # fmt: skip

    def _set_slices(self, slices: dict[str, SliceView]) -> None:
        self.slices = slices
        self.slices_listed = True

    def _error_poster(self, what: str) -> Callable[[str | None], None]:
        return lambda error: self._post(self._set_error, what, error)

    def _set_error(self, what: str, error: str | None) -> None:
        if error is None:
            self._errors.pop(what, None)
        else:
            self._errors[what] = error

    async def _reconcile_forever(self) -> None:
        assert self._dirty is not None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a worker that did not take the table: push it again
                log.warning("applying the routing table failed; retrying", bakeoff=self.name, error=str(e))
                try:  # again in 0.5 s, or at once when something new arrives
                    await asyncio.wait_for(self._dirty.wait(), 0.5)
                except TimeoutError:
                    pass
                self._dirty.set()

    async def _reconcile(self) -> None:
        if self.set_stickiness is not None and self.wanted_stickiness != self.stickiness:
            wanted = self.wanted_stickiness
            await self.set_stickiness(wanted)  # raises: retried by _reconcile_forever
            was, self.stickiness = self.stickiness, wanted
            log.info("stickiness changed", bakeoff=self.name, namespace=self.namespace,
                     stickiness=_fmt_sticky(wanted), previous=_fmt_sticky(was),
                     note="the routing table is unchanged: users whose key is the same under both keep their variant")  # fmt: skip
        if not (self.listed and self.slices_listed):
            return
        table, why = build_table(self.bakeoff, self.slices)
        if table is None and why in ("the Bakeoff does not exist", "the Bakeoff has no status.routing yet"):
            candidates = [m for m in (self.mainline_service, self.last_mainline) if m is not None]
            if self.mainline_service is not None and self.last_mainline is not None:
                candidates[0] = Mainline(self.last_mainline.name, self.mainline_service.service,
                                         self.mainline_service.port)  # fmt: skip
            fallback, used = fallback_table(candidates, self.slices, self.last_version + 1)
            if fallback is not None and used is not None:
                table, why = fallback, f"{why}: all traffic to the mainline Service {used.service}"
        if table is None:
            self.problem = why
            if why != self._warned:
                self._warned = why
                log.warning("nothing routable; keeping the current routing table",
                            bakeoff=self.name, namespace=self.namespace, reason=why,
                            serving=self.applied.version if self.applied else None)  # fmt: skip
            return
        self._warned = None
        routes = self.request_routes if self.request_routes != self.applied_routes else None
        if table == self.applied and routes is None:
            return
        await self.apply(table.variants, table.version, routes)
        if routes is not None:
            self.applied_routes = routes
        previous = self.applied
        self.applied = table
        self.problem = ""
        log.info("routing table applied from the API server", bakeoff=self.name, namespace=self.namespace,
                 version=table.version,
                 variants={v.name: {"weight": v.weight, "upstreams": [f"{h}:{p}" for h, p in v.upstreams]}
                           for v in table.variants},
                 previous=previous.version if previous else None, note=why or None)  # fmt: skip


class ClusterBackend:
    """The control backend in cluster mode: the router's own (local or workers), plus the source's state.

    Ready only once a table from the API server is applied; PUT /-/routes is
    refused, since the next change of the Bakeoff would overwrite it.
    """

    def __init__(self, inner: Any, source: ClusterSource) -> None:
        self.inner = inner
        self.source = source

    def ready(self) -> bool:
        return self.source.applied is not None and self.inner.ready()

    def not_ready_reason(self) -> str:
        return self.source.not_ready_reason() or "the router is not accepting traffic"

    async def snapshot(self) -> dict[str, Any]:
        return await self.inner.snapshot()

    async def routes(self) -> dict[str, Any]:
        return await self.inner.routes()

    async def put_routes(
        self,
        specs: tuple[VariantSpec, ...],
        version: int | None = None,
        request_routes: tuple[RouteSpec, ...] | None = None,
    ) -> dict[str, Any]:
        from aiohttp import web

        raise web.HTTPConflict(
            text=json.dumps({"error": f"routes come from {self.source.where} (status.routing) in --kubernetes mode; "
                                      "PUT /-/routes is disabled"}),
            content_type="application/json",
        )  # fmt: skip

    async def record_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self.inner.record_events(events)


def read_stickiness(api: Any, namespace: str, name: str) -> tuple[Stickiness, str | None]:
    """The Bakeoff's stickiness at start-up, or (None, why) when it cannot be read now."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from bakeoff.common.kube import api_error_message

    try:
        obj = cast(
            dict[str, Any],
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=(3, 5)
            ),
        )
    except ApiException as e:
        return None, f"{e.status} {api_error_message(e)}"
    except Exception as e:
        return None, _short_error(e)
    try:
        return stickiness_of(obj), None
    except ValueError as e:
        return None, str(e)


def _fmt_sticky(st: Stickiness | str) -> str:
    if st is None:
        return "none"
    if isinstance(st, str):
        return st
    return f"{st[0]}: {st[1]}"
