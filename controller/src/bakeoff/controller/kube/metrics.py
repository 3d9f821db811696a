"""The controller's own Prometheus metrics, and the /metrics + /healthz endpoint serving them."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bakeoff.controller.decision_metrics import DecisionMetrics


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.reconciles = Counter(
            "bakeoff_controller_reconciles_total", "Reconcile passes per Bakeoff, by result", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "bakeoff_controller_reconcile_seconds",
            "Time of one reconcile pass",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.transitions = Counter(
            "bakeoff_controller_transitions_total", "Recorded transitions, by type", ["type"], registry=r
        )
        self.conflicts = Counter(
            "bakeoff_controller_conflicts_total",
            "Writes refused with 409 Conflict (retried on a fresh read)",
            registry=r,
        )
        self.api_errors = Counter(
            "bakeoff_controller_api_errors_total", "API calls that failed, by verb", ["verb"], registry=r
        )
        self.looks = Counter("bakeoff_controller_judge_looks_total", "Judge looks, by result", ["result"], registry=r)
        self.leader = Gauge("bakeoff_controller_leader", "1 while this replica holds the leader Lease", registry=r)
        self.bakeoffs = Gauge("bakeoff_controller_bakeoffs", "Bakeoffs seen, by phase", ["phase"], registry=r)
        self.promotions = Counter(
            "bakeoff_controller_promotions_total", "Mainline Deployments patched to a winner", registry=r
        )
        # Per Bakeoff ("namespace/name") and variant: share, phase, estimates and bounds, decisions by action.
        self.decisions = DecisionMetrics(r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def serve(metrics: ControllerMetrics, host: str, port: int, health: Any) -> tuple[Any, int]:
    """Start /metrics and /healthz on host:port; (the aiohttp runner: call .cleanup(), the bound port)."""
    from aiohttp import web

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_handler(request: web.Request) -> web.Response:
        ok, detail = health()
        return web.json_response(detail, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    # aiohttp's AppRunner has __slots__ (3.14): the port is returned, not stored on it.
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)
