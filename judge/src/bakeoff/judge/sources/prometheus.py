"""PromQL over HTTP against the router's metric names (router/metrics.py).

The instant queries below sum over router instances, so the result is the
merged view of every replica Prometheus scrapes -- shaped as a
``bakeoff.snapshot/v1`` snapshot for the pure core:

- ``bakeoff_requests_total{variant, outcome}`` -> requests and outcomes;
- ``bakeoff_request_duration_seconds_bucket{variant, le}`` -> latency;
- ``bakeoff_metric_values_total`` / ``bakeoff_metric_sum`` /
  ``bakeoff_metric_sum_squares{variant, metric}`` -> business metrics.

Latency resolution: Prometheus only has the coarse ``le`` buckets the router
exports (PROMETHEUS_LATENCY_BUCKETS, 26 bounds), so each coarse bucket's count
is put in the fine bucket at its geometric middle.  Quantile tests remain
exact under the A/A null, but a relative tolerance is only resolved as finely
as those bounds; the router snapshot source has the full 1% histogram.

A restarted router shows up as counters going down in the sum, which the core
detects; there are no process start times, so ``sources`` is a single
constant entry.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bakeoff.contracts.histogram import LAYOUT, MAX_VALUE, NUM_BUCKETS, bucket_index, encode_counts
from bakeoff.contracts.snapshot import OUTCOMES, SNAPSHOT_FORMAT
from bakeoff.judge.sources import SourceError
from bakeoff.judge.sources.http import post_form_json


def _fine_index_between(lo: float, hi: float) -> int:
    if hi == math.inf:
        return min(NUM_BUCKETS - 1, bucket_index(min(MAX_VALUE, lo * 1.5)))
    if lo <= 0:
        return bucket_index(hi / 2)
    return bucket_index(math.sqrt(lo * hi))


class PrometheusSource:
    def __init__(self, base_url: str, *, selector: str = "", timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.selector = selector
        self.timeout = timeout
        self.description = f"prometheus {self.base_url}" + (f" {{{selector}}}" if selector else "")

    @classmethod
    def from_location(cls, location: str, *, timeout: float = 10.0) -> PrometheusSource:
        url = location.split("+", 1)[1]
        parts = urlsplit(url)
        selector = parse_qs(parts.query).get("selector", [""])[0]
        return cls(f"{parts.scheme}://{parts.netloc}{parts.path}", selector=selector, timeout=timeout)

    def _m(self, name: str) -> str:
        return f"{name}{{{self.selector}}}" if self.selector else name

    async def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        url = f"{self.base_url}/api/v1/query"
        form = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        body = await post_form_json(url, form, self.timeout)
        if not isinstance(body, dict) or body.get("status") != "success":
            err = body.get("error") if isinstance(body, dict) else body
            raise SourceError(f"{url}: query {promql!r} failed: {err}")
        data = body.get("data", {})
        if data.get("resultType") != "vector":
            raise SourceError(f"{url}: query {promql!r} returned {data.get('resultType')}, expected a vector")
        return data.get("result", [])

    async def fetch(self) -> dict[str, Any]:
        # Every query is evaluated at the same instant, so all the series come
        # from the same scrape: a scrape landing between two queries would
        # otherwise mix two points in time into one snapshot.
        at = time.time()
        q_req, q_bucket, q_sum, q_cnt, q_mc, q_ms, q_mq = await asyncio.gather(
            self.query(f"sum by (variant, outcome) ({self._m('bakeoff_requests_total')})", at),
            self.query(f"sum by (variant, le) ({self._m('bakeoff_request_duration_seconds_bucket')})", at),
            self.query(f"sum by (variant) ({self._m('bakeoff_request_duration_seconds_sum')})", at),
            self.query(f"sum by (variant) ({self._m('bakeoff_request_duration_seconds_count')})", at),
            self.query(f"sum by (variant, metric) ({self._m('bakeoff_metric_values_total')})", at),
            self.query(f"sum by (variant, metric) ({self._m('bakeoff_metric_sum')})", at),
            self.query(f"sum by (variant, metric) ({self._m('bakeoff_metric_sum_squares')})", at),
        )
        variants: dict[str, dict[str, Any]] = {}
        taken = 0.0

        def var(name: str) -> dict[str, Any]:
            return variants.setdefault(
                name, {"outcomes": dict.fromkeys(OUTCOMES, 0), "le": {}, "sum": 0.0, "count": 0, "metrics": {}}
            )

        def val(r) -> float:
            nonlocal taken
            ts, v = r["value"]
            taken = max(taken, float(ts))
            return float(v)

        for r in q_req:
            lab = r["metric"]
            if "variant" in lab and lab.get("outcome") in OUTCOMES:
                var(lab["variant"])["outcomes"][lab["outcome"]] = int(round(val(r)))
        for r in q_bucket:
            lab = r["metric"]
            if "variant" in lab and "le" in lab:
                var(lab["variant"])["le"][float(lab["le"])] = int(round(val(r)))
        for r in q_sum:
            if "variant" in r["metric"]:
                var(r["metric"]["variant"])["sum"] = val(r)
        for r in q_cnt:
            if "variant" in r["metric"]:
                var(r["metric"]["variant"])["count"] = int(round(val(r)))
        for q, field in ((q_mc, "count"), (q_ms, "sum"), (q_mq, "sum_sq")):
            for r in q:
                lab = r["metric"]
                if "variant" in lab and "metric" in lab:
                    m = var(lab["variant"])["metrics"].setdefault(
                        lab["metric"], {"count": 0, "sum": 0.0, "sum_sq": 0.0}
                    )
                    m[field] = int(round(val(r))) if field == "count" else val(r)

        out = {}
        for name, v in sorted(variants.items()):
            dense = [0] * NUM_BUCKETS
            prev_le, prev_cum = 0.0, 0
            for le in sorted(v["le"]):
                cum = v["le"][le]
                c = cum - prev_cum
                if c > 0:
                    dense[_fine_index_between(prev_le, le)] += c
                prev_le, prev_cum = le, max(prev_cum, cum)
            out[name] = {
                "requests": sum(v["outcomes"].values()),
                "outcomes": v["outcomes"],
                "latency": encode_counts(dense, v["count"], v["sum"]),
                "metrics": v["metrics"],
                "invalid_metrics": 0,
            }
        return {
            "format": SNAPSHOT_FORMAT,
            "taken_at": taken or time.time(),
            "sources": [{"router_id": self.description, "pid": 0, "started_at": 0.0}],
            "histogram": dict(LAYOUT),
            "routes": {"version": 0, "weights": {}},
            "variants": out,
        }

    async def fetch_each(self) -> list[dict[str, Any]]:
        # Prometheus has already summed every router: one series, one baseline.
        return [await self.fetch()]

    async def close(self) -> None:
        """Nothing to release: every query opens and closes its own connection."""
