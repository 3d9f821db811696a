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

from bakeoff.contracts.histogram import (
    GAMMA,
    LAYOUT,
    MAX_VALUE,
    MIN_VALUE,
    NUM_BUCKETS,
    LatencyHistogram,
    encode_counts,
)
from bakeoff.contracts.snapshot import OUTCOMES, SNAPSHOT_FORMAT

# LatencyHistogram.record's bucket arithmetic, computed here by the same
# expressions (so to the same bits: tests/router/test_histogram.py checks it):
# this module is compiled and bakeoff.contracts is not, and calling the
# interpreted method cost about 3,700 instructions per request (callgrind).
_MIN: Final = MIN_VALUE
_MAX: Final = MAX_VALUE
_LAST: Final = NUM_BUCKETS - 1
_INV_LOG_GAMMA: Final = 1.0 / math.log(GAMMA)
_OFFSET: Final = math.ceil(math.log(MIN_VALUE) * _INV_LOG_GAMMA)


_WIRE_NAMES: Final = 64


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
    """Requests, outcomes and latency: of one route of a variant, and (below) of the variant.

    The latency histogram's counts, count and sum are this object's own
    fields, not a ``LatencyHistogram``'s: that class is interpreted, and
    reading and writing its attributes from here cost about 1,500
    instructions a request (callgrind); ``latency`` builds one on demand.
    """

    __slots__ = ("requests", "outcomes", "latency_counts", "latency_count", "latency_total")

    def __init__(self) -> None:
        self.requests = 0
        self.outcomes = [0] * len(OUTCOMES)
        self.latency_counts = [0] * NUM_BUCKETS
        self.latency_count = 0
        self.latency_total = 0.0

    @property
    def latency(self) -> LatencyHistogram:
        """A copy of the latency histogram."""
        h = LatencyHistogram()
        h.counts = list(self.latency_counts)
        h.count = self.latency_count
        h.total = self.latency_total
        return h

    def record_latency(self, seconds: float) -> None:
        """``LatencyHistogram.record(seconds)``, on this object's fields."""
        if seconds <= _MIN:
            i = 0
        elif seconds >= _MAX:
            i = _LAST
        else:
            i = math.ceil(math.log(seconds) * _INV_LOG_GAMMA) - _OFFSET
        self.latency_counts[i] += 1
        self.latency_count += 1
        self.latency_total += seconds

    def record_response(self, status: int, seconds: float) -> None:
        self.requests += 1
        cls = status // 100 - 1
        if 0 <= cls <= 4:
            self.outcomes[cls] += 1
        self.record_latency(seconds)

    def record_outcome(self, outcome: int, seconds: float) -> None:
        """A request that ended without a status class of its own: an upgrade, a failure."""
        self.requests += 1
        self.outcomes[outcome] += 1
        self.record_latency(seconds)

    def counts_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "outcomes": dict(zip(OUTCOMES, self.outcomes)),
            "latency": encode_counts(self.latency_counts, self.latency_count, self.latency_total),
        }


class VariantStats(RouteStats):
    __slots__ = ("metrics", "invalid_metrics", "route_names", "by_route", "_wire_names")

    def __init__(self, route_names: list[str]) -> None:
        super().__init__()
        self.metrics: dict[str, BusinessMetric] = {}
        self._wire_names: dict[bytes, BusinessMetric] = {}  # see record_wire_metric
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
        if value - value != 0.0:  # inf or nan (math.isfinite is a generic call from compiled code)
            self.invalid_metrics += 1
            return False
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = BusinessMetric()
        metric.add(value)
        return True

    def record_wire_metric(self, wire_name: bytes, raw: bytes) -> None:
        """``record_metric`` for a metric named as a response header named it (after the prefix, in any case).

        Its metric is found by those bytes, as sent, without lower-casing and
        decoding the name each time (about 700 instructions a response);
        the names seen are few, and at most ``_WIRE_NAMES`` are kept.
        """
        metric = self._wire_names.get(wire_name)
        if metric is None:
            name = wire_name.lower().decode("latin-1")
            if self.record_metric(name, raw) and len(self._wire_names) < _WIRE_NAMES:
                self._wire_names[wire_name] = self.metrics[name]
            return
        try:
            value = float(raw)
        except ValueError:
            self.invalid_metrics += 1
            return
        if value - value != 0.0:  # inf or nan
            self.invalid_metrics += 1
            return
        metric.add(value)

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
