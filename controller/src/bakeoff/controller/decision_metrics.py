"""The decisions of bake-offs as Prometheus series: the controller's /metrics and `bakeoff run --metrics`.

One set of series for both (charts/bakeoff/dashboards/bakeoff-decisions.json reads exactly these):

- ``bakeoff_phase{bakeoff, phase}`` -- 1 for the bake-off's current phase (one series per bake-off);
- ``bakeoff_variant_share{bakeoff, variant}`` -- the share of traffic last asked for, 0..1;
- ``bakeoff_variant_phase{bakeoff, variant, phase}`` -- 1 for each variant's current phase;
- ``bakeoff_judge_estimate{bakeoff, variant, metric, route}`` -- the judge's estimate of the
  candidate against the mainline (a difference, or a relative change for latency: docs/judge.md);
- ``bakeoff_judge_lower{...}`` and ``bakeoff_judge_upper{...}`` -- the bounds of its
  anytime-valid confidence sequence (route ``all`` is the whole service);
- ``bakeoff_judge_requests{bakeoff, variant}`` -- requests the last look counted;
- ``bakeoff_decisions_total{bakeoff, action, variant}`` -- a counter of the decisions taken
  (admitted, ramped, rolled_back, winner, promoted, failed, ...; variant "" for the bake-off's own).

A decision counter's series is shown at 0 the first time it is scraped and at its count from then
on. Prometheus's ``increase()`` starts from a series' first sample, so a series first scraped at 1
hides its first decision from every dashboard panel built on it; the one scrape of delay keeps it.
(With two Prometheus servers scraping, only the first sees the 0.)

The gauges are rendered at scrape time from the last observation of each bake-off
(``observe``); a bake-off that is gone is dropped with ``forget``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

ALL_ROUTES = "all"


@dataclass
class _Observed:
    phase: str
    shares: dict[str, float]
    variant_phases: dict[str, str]
    verdict: Any = None  # bakeoff.judge.verdict.Verdict | None
    estimates: list[tuple[str, str, str, float, float, float]] = field(default_factory=list)


class DecisionMetrics:
    """Per bake-off and variant: share, phase, the judge's estimates and bounds, and decisions by action."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._observed: dict[str, _Observed] = {}
        self.decisions: dict[tuple[str, str, str], int] = {}  # (bakeoff, action, variant) -> count
        self._scraped: set[tuple[str, str, str]] = set()  # series already shown once (at 0)
        registry.register(_Collector(self))

    def observe(
        self,
        bakeoff: str,
        phase: str,
        shares: Mapping[str, float],
        variant_phases: Mapping[str, str],
        verdict: Any = None,
    ) -> None:
        """The bake-off as it is now (call after each pass or look)."""
        total = sum(w for w in shares.values() if w > 0)
        estimates = []
        if verdict is not None:
            for vname, vv in verdict.variants.items():
                for mv in vv.metrics.values():
                    lo, hi = mv.ci
                    estimates.append((vname, mv.metric, mv.route or ALL_ROUTES, mv.estimate, lo, hi))
        self._observed[bakeoff] = _Observed(
            phase=phase,
            shares={n: (w / total if total > 0 else 0.0) for n, w in shares.items()},
            variant_phases=dict(variant_phases),
            verdict=verdict,
            estimates=estimates,
        )

    def decided(self, bakeoff: str, events: list[dict[str, Any]]) -> None:
        """Count the decisions (controller events) of one pass."""
        for e in events:
            key = (bakeoff, str(e.get("type")), e.get("variant") or "")
            self.decisions[key] = self.decisions.get(key, 0) + 1

    def forget(self, keep: set[str]) -> None:
        """Drop the gauges of bake-offs not in ``keep`` (deleted ones); their decision counts stay."""
        for name in list(self._observed):
            if name not in keep:
                del self._observed[name]

    def _decision_family(self) -> Metric:
        fam = CounterMetricFamily(
            "bakeoff_decisions",
            "Decisions taken, by bake-off, action and variant",
            labels=["bakeoff", "action", "variant"],
        )
        for key, count in sorted(self.decisions.items()):
            fam.add_metric(list(key), count if key in self._scraped else 0)
            self._scraped.add(key)
        return fam

    def families(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily("bakeoff_phase", "1 for the bake-off's current phase", labels=["bakeoff", "phase"])
        share = GaugeMetricFamily(
            "bakeoff_variant_share", "Share of traffic asked for the variant, 0..1", labels=["bakeoff", "variant"]
        )
        vphase = GaugeMetricFamily(
            "bakeoff_variant_phase", "1 for the variant's current phase", labels=["bakeoff", "variant", "phase"]
        )
        labels = ["bakeoff", "variant", "metric", "route"]
        estimate = GaugeMetricFamily(
            "bakeoff_judge_estimate", "The judge's estimate of the variant against the mainline", labels=labels
        )
        lower = GaugeMetricFamily("bakeoff_judge_lower", "Lower bound of the confidence sequence", labels=labels)
        upper = GaugeMetricFamily("bakeoff_judge_upper", "Upper bound of the confidence sequence", labels=labels)
        requests = GaugeMetricFamily(
            "bakeoff_judge_requests", "Requests of the variant at the judge's last look", labels=["bakeoff", "variant"]
        )
        for name, o in sorted(self._observed.items()):
            phase.add_metric([name, o.phase], 1)
            for v, s in sorted(o.shares.items()):
                share.add_metric([name, v], s)
            for v, ph in sorted(o.variant_phases.items()):
                vphase.add_metric([name, v, ph], 1)
            for v, metric, route, est, lo, hi in o.estimates:
                for fam, val in ((estimate, est), (lower, lo), (upper, hi)):
                    if isinstance(val, (int, float)) and math.isfinite(val):
                        fam.add_metric([name, v, metric, route], float(val))
            if o.verdict is not None:
                for v, vv in sorted(o.verdict.variants.items()):
                    requests.add_metric([name, v], vv.requests)
        yield from (phase, share, vphase, estimate, lower, upper, requests, self._decision_family())


class _Collector:
    def __init__(self, owner: DecisionMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        return self.owner.families()


async def serve(registry: CollectorRegistry, host: str, port: int) -> tuple[Any, int]:
    """Serve /metrics of ``registry`` on host:port (port 0: any); (the aiohttp runner, the bound port)."""
    from aiohttp import web
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)
