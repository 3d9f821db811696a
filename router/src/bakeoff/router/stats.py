"""Per-variant statistics recorded on the hot path.

Everything here is a plain counter or a preallocated list, touched once per
request with no locking: each router worker is one thread on one event loop,
and workers merge through snapshots (``bakeoff.contracts.snapshot``), never through
shared memory.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Final

from bakeoff.contracts.histogram import GAMMA, LAYOUT, MAX_VALUE, MIN_VALUE, NUM_BUCKETS, LatencyHistogram
from bakeoff.contracts.snapshot import OUTCOMES, SNAPSHOT_FORMAT

# LatencyHistogram.record's bucket arithmetic, computed here by the same
# expressions (so to the same bits: tests/router/test_stats.py checks it):
# this module is compiled and bakeoff.contracts is not, and calling the
# interpreted method cost about 3,700 instructions per request (callgrind).
_MIN: Final = MIN_VALUE
_MAX: Final = MAX_VALUE
_LAST: Final = NUM_BUCKETS - 1
_INV_LOG_GAMMA: Final = 1.0 / math.log(GAMMA)
_OFFSET: Final = math.ceil(math.log(MIN_VALUE) * _INV_LOG_GAMMA)


def record_latency(h: LatencyHistogram, seconds: float) -> None:
    """``h.record(seconds)``, compiled."""
    if seconds <= _MIN:
        i = 0
    elif seconds >= _MAX:
        i = _LAST
    else:
        i = math.ceil(math.log(seconds) * _INV_LOG_GAMMA) - _OFFSET
    h.counts[i] += 1
    h.count += 1
    h.total += seconds


class BusinessMetric:
    """Count, sum and sum of squares of one reported business value."""

    __slots__ = ("count", "sum", "sum_sq")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.sum_sq = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.sum_sq += value * value

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum, "sum_sq": self.sum_sq}


class RouteStats:
    """Requests, outcomes and latency: of one route of a variant, and (below) of the variant."""

    __slots__ = ("requests", "outcomes", "latency")

    def __init__(self) -> None:
        self.requests = 0
        self.outcomes = [0] * len(OUTCOMES)
        self.latency = LatencyHistogram()

    def record_response(self, status: int, seconds: float) -> None:
        self.requests += 1
        cls = status // 100 - 1
        if 0 <= cls <= 4:
            self.outcomes[cls] += 1
        record_latency(self.latency, seconds)

    def record_outcome(self, outcome: int, seconds: float) -> None:
        """A request that ended without a status class of its own: an upgrade, a failure."""
        self.requests += 1
        self.outcomes[outcome] += 1
        record_latency(self.latency, seconds)

    def counts_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "outcomes": dict(zip(OUTCOMES, self.outcomes)),
            "latency": self.latency.to_json(),
        }


class VariantStats(RouteStats):
    __slots__ = ("metrics", "invalid_metrics", "route_names", "by_route")

    def __init__(self, route_names: list[str]) -> None:
        super().__init__()
        self.metrics: dict[str, BusinessMetric] = {}
        self.invalid_metrics = 0
        # Indexed like route_names, the router's append-only list of every
        # route it has counted; None while no routes are configured.
        self.route_names = route_names
        self.by_route = [RouteStats() for _ in route_names] if route_names else None

    def record_metric(self, name: str, raw: bytes | str | float) -> bool:
        """Add one business value; an unparsable or non-finite one is counted and dropped."""
        try:
            value = float(raw)
        except (TypeError, ValueError):
            self.invalid_metrics += 1
            return False
        if not math.isfinite(value):
            self.invalid_metrics += 1
            return False
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = BusinessMetric()
        metric.add(value)
        return True

    def record(self, route: int, status: int, outcome: int | None, seconds: float) -> None:
        """One finished request (HTTP/1.1 or HTTP/2): its status, or its outcome if it has one, for the variant
        and for its route (route < 0: none)."""
        by_route = self.by_route
        if outcome is None:
            self.record_response(status, seconds)
            if route >= 0 and by_route is not None:
                by_route[route].record_response(status, seconds)
        else:
            self.record_outcome(outcome, seconds)
            if route >= 0 and by_route is not None:
                by_route[route].record_outcome(outcome, seconds)

    def to_json(self) -> dict[str, Any]:
        out = self.counts_json()
        out["metrics"] = {k: m.to_json() for k, m in sorted(self.metrics.items())}
        out["invalid_metrics"] = self.invalid_metrics
        if self.by_route is not None:
            out["by_route"] = {n: r.counts_json() for n, r in zip(self.route_names, self.by_route)}
        return out


class RouterStats:
    """All variants' statistics of one router process."""

    def __init__(self, router_id: str | None = None, route_names: tuple[str, ...] = ()) -> None:
        self.variants: dict[str, VariantStats] = {}
        self.route_names: list[str] = []
        if route_names:
            self.route_slots(route_names)
        self.router_id = router_id or f"{os.uname().nodename}-{os.getpid()}"
        self.started_at = time.time()

    def variant(self, name: str) -> VariantStats:
        stats = self.variants.get(name)
        if stats is None:
            stats = self.variants[name] = VariantStats(self.route_names)
        return stats

    def route_slots(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """Indices of these routes in every variant's by_route, adding the new ones.

        Never shrinks: a route dropped from the configuration keeps the counts
        it had (snapshots are cumulative), and a request routed before a
        change records into a slot that still exists.
        """
        slots = []
        for name in names:
            if name not in self.route_names:
                self.route_names.append(name)
                for v in self.variants.values():
                    if v.by_route is None:
                        v.by_route = []
                    v.by_route.append(RouteStats())
            slots.append(self.route_names.index(name))
        return tuple(slots)

    def snapshot(self, weights: dict[str, float] | None = None, routes_version: int = 0) -> dict[str, Any]:
        """The documented, versioned snapshot (see docs/snapshot.md)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "taken_at": time.time(),
            "sources": [{"router_id": self.router_id, "pid": os.getpid(), "started_at": self.started_at}],
            "histogram": dict(LAYOUT),
            "routes": {"version": routes_version, "weights": dict(weights or {})},
            "variants": {name: s.to_json() for name, s in sorted(self.variants.items())},
        }
