"""The control plane, on its own port: routes, snapshot, metrics, events, health.

It is an aiohttp application over a small backend seam: ``LocalBackend``
serves one in-process Router; ``bakeoff.router.workers.WorkerBackend`` fans out to
the worker processes of ``--workers N`` and merges what they return.

| endpoint            | what                                                        |
|---------------------|-------------------------------------------------------------|
| GET  /-/healthz     | 200 while the process lives                                 |
| GET  /-/readyz      | 200 once traffic is accepted and some variant has weight    |
| GET  /-/routes      | the routing table (bearer token)                            |
| PUT  /-/routes      | replace it atomically: ``{"variants": [...]}`` (bearer token) |
| GET  /-/snapshot    | cumulative statistics, docs/snapshot.md                     |
| GET  /metrics       | the same in Prometheus text format                          |
| POST /-/events      | ``{"key"|"variant", "metric", "value"}`` or a list (events token) |
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any, Protocol

from aiohttp import web

from bakeoff.router.config import ConfigError, RouteSpec, VariantSpec, parse_routes, parse_variants
from bakeoff.router.metrics import CONTENT_TYPE, render


class ControlBackend(Protocol):
    def ready(self) -> bool: ...

    async def snapshot(self) -> dict[str, Any]: ...

    async def routes(self) -> dict[str, Any]: ...

    async def put_routes(
        self,
        specs: tuple[VariantSpec, ...],
        version: int | None = None,
        request_routes: tuple[RouteSpec, ...] | None = None,
    ) -> dict[str, Any]: ...

    async def record_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


class LocalBackend:
    def __init__(self, router: Any) -> None:
        self.router = router

    def ready(self) -> bool:
        r = self.router
        return r._server is not None and not r.draining and any(v.weight > 0 for v in r.routes.variants)

    async def snapshot(self) -> dict[str, Any]:
        return self.router.snapshot()

    async def routes(self) -> dict[str, Any]:
        return self.router.routes.to_json()

    async def put_routes(
        self,
        specs: tuple[VariantSpec, ...],
        version: int | None = None,
        request_routes: tuple[RouteSpec, ...] | None = None,
    ) -> dict[str, Any]:
        if request_routes is not None:
            self.router.set_request_routes(request_routes)
        return self.router.set_routes(specs, version).to_json()

    async def record_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [attribute_event(self.router, e) for e in events]

    async def set_stickiness(self, kind: str | None, name: str | None) -> dict[str, Any]:
        self.router.set_stickiness(kind, name)
        return {"stickiness": {kind: name} if kind else None}


def attribute_event(router: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Add one business event to the variant its key (or named variant) maps to."""
    table = router.routes
    if "variant" in event:
        variant = table.by_name.get(event["variant"])
        if variant is None:
            return {"error": f"variant {event['variant']!r} is not in the routing table"}
    else:
        variant = table.pick_sticky(str(event["key"]).encode())
        if variant is None:
            return {"error": "no variant has weight"}
    ok = router.stats.variant(variant.name).record_metric(event["metric"], event["value"])
    return {"variant": variant.name} if ok else {"variant": variant.name, "error": "value is not a finite number"}


def _check_event(e: Any, i: int, sticky: bool) -> dict[str, Any]:
    where = f"event {i}"
    if not isinstance(e, dict):
        raise ValueError(f"{where}: expected an object with key (or variant), metric and value")
    if not isinstance(e.get("metric"), str) or not e["metric"]:
        raise ValueError(f"{where}: field 'metric' must be a non-empty string")
    if "value" not in e:
        raise ValueError(f"{where}: field 'value' is missing")
    if "variant" in e:
        if not isinstance(e["variant"], str):
            raise ValueError(f"{where}: field 'variant' must be a string")
    elif "key" in e:
        if not isinstance(e["key"], (str, int)) or e["key"] == "":
            raise ValueError(f"{where}: field 'key' must be a non-empty string")
        if not sticky:
            raise ValueError(
                f"{where}: field 'key' needs stickiness (header or cookie) in the router config; send 'variant' instead"
            )
    else:
        raise ValueError(f"{where}: give 'key' (the sticky key) or 'variant'")
    return e


def is_loopback(address: tuple[str, int] | str) -> bool:
    """Whether only this machine can reach the admin listener (a Unix socket counts)."""
    if isinstance(address, str):
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_admin_app(
    backend: ControlBackend,
    token: str | None,
    sticky: bool = True,
    events_token: str | None = None,
    loopback: bool = False,
) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    # Events move the objective the judge decides on, so pushing them needs a
    # token once anyone but this machine can reach the port.
    event_tokens = [f"Bearer {t}".encode() for t in (events_token, token) if t]

    def events_authorised(request: web.Request) -> web.Response | None:
        if not event_tokens:
            if loopback:
                return None
            return web.json_response(
                {
                    "error": "POST /-/events needs a token when the admin port is not on a loopback address: "
                    "set eventsToken (or eventsTokenFile, $BAKEOFF_EVENTS_TOKEN, --events-token) or token "
                    "in the router config, and send Authorization: Bearer <token>"
                },
                status=403,
            )
        given = request.headers.get("Authorization", "").encode()
        if any(hmac.compare_digest(given, t) for t in event_tokens):
            return None
        return web.json_response(
            {"error": "POST /-/events: missing or wrong bearer token (the events token or the admin token)"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="bakeoff-events"'},
        )

    def authorised(request: web.Request) -> web.Response | None:
        if token is None:
            return web.json_response(
                {"error": "routes are read-only: no token is configured (token, tokenFile or BAKEOFF_ROUTER_TOKEN)"},
                status=403,
            )
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="bakeoff"'},
            )
        return None

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if backend.ready():
            return web.Response(text="ready\n")
        reason = getattr(backend, "not_ready_reason", None)  # e.g. router.cluster.ClusterBackend
        return web.Response(text=f"not ready: {reason()}\n" if reason else "not ready\n", status=503)

    async def get_routes(request: web.Request) -> web.Response:
        denied = authorised(request)
        return denied or web.json_response(await backend.routes())

    async def put_routes(request: web.Request) -> web.Response:
        denied = authorised(request)
        if denied:
            return denied
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "PUT /-/routes: body is not JSON"}, status=400)
        if not isinstance(body, dict) or "variants" not in body:
            return web.json_response({"error": 'PUT /-/routes: expected {"variants": [...]}'}, status=400)
        try:
            specs = parse_variants(body["variants"], "PUT /-/routes")
        except ConfigError as e:
            return web.json_response({"error": str(e)}, status=400)
        if not specs:
            return web.json_response({"error": "PUT /-/routes: variants must not be empty"}, status=400)
        version = body.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            return web.json_response({"error": "PUT /-/routes: version must be an integer"}, status=400)
        request_routes = None
        if "routes" in body:  # optional: the per-route statistics patterns as well
            try:
                request_routes = parse_routes(body["routes"] or [], "PUT /-/routes")
            except ConfigError as e:
                return web.json_response({"error": str(e)}, status=400)
        return web.json_response(await backend.put_routes(specs, version, request_routes))

    async def snapshot(request: web.Request) -> web.Response:
        return web.json_response(await backend.snapshot())

    async def metrics(request: web.Request) -> web.Response:
        body = render(await backend.snapshot())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def events(request: web.Request) -> web.Response:
        denied = events_authorised(request)
        if denied:
            return denied
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "POST /-/events: body is not JSON"}, status=400)
        items = body if isinstance(body, list) else [body]
        try:
            checked = [_check_event(e, i, sticky) for i, e in enumerate(items)]
        except ValueError as e:
            return web.json_response({"error": f"POST /-/events: {e}"}, status=400)
        results = await backend.record_events(checked)
        status = 202 if all("error" not in r for r in results) else 422
        return web.json_response({"results": results}, status=status)

    app.router.add_get("/-/healthz", healthz)
    app.router.add_get("/-/readyz", readyz)
    app.router.add_get("/-/routes", get_routes)
    app.router.add_put("/-/routes", put_routes)

    async def put_stickiness(request: web.Request) -> web.Response:
        """``{"stickiness": {"header"|"cookie": NAME} | null}``: how a supervisor hands the Bakeoff's
        stickiness to its workers (cluster mode). Only where the backend can change it."""
        denied = authorised(request)
        if denied:
            return denied
        setter = getattr(backend, "set_stickiness", None)
        if setter is None:
            return web.json_response({"error": "PUT /-/stickiness: not available here"}, status=404)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "PUT /-/stickiness: body is not JSON"}, status=400)
        st = body.get("stickiness") if isinstance(body, dict) else ...
        if st is None:
            return web.json_response(await setter(None, None))
        if isinstance(st, dict) and len(st) == 1:
            ((kind, name),) = st.items()
            if kind in ("header", "cookie") and isinstance(name, str) and name:
                return web.json_response(await setter(kind, name))
        return web.json_response(
            {"error": 'PUT /-/stickiness: expected {"stickiness": {"header"|"cookie": NAME} or null}'}, status=400
        )

    app.router.add_put("/-/stickiness", put_stickiness)
    app.router.add_get("/-/snapshot", snapshot)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/-/events", events)
    return app


class AdminServer:
    def __init__(self, runner: web.AppRunner, site: web.BaseSite) -> None:
        self.runner = runner
        self.site = site

    @property
    def port(self) -> int | None:
        # aiohttp keeps the asyncio server here; the abstract type lacks .sockets
        server: Any = self.site._server
        if server is None or not getattr(server, "sockets", None):
            return None
        name = server.sockets[0].getsockname()
        return name[1] if isinstance(name, tuple) else None

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_admin(
    backend: ControlBackend,
    address: tuple[str, int] | str,
    token: str | None,
    sticky: bool = True,
    events_token: str | None = None,
) -> AdminServer:
    """Serve the control plane on host:port, or on a Unix socket path."""
    app = make_admin_app(backend, token, sticky, events_token, loopback=is_loopback(address))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    if isinstance(address, str):
        site: web.BaseSite = web.UnixSite(runner, address)
    else:
        site = web.TCPSite(runner, address[0], address[1], reuse_address=True)
    await site.start()
    return AdminServer(runner, site)
