"""Synthetic request streams as router snapshots (for tests, benchmarks, demos).

Pure numpy: a look's new requests per variant are drawn in bulk -- errors
and conversions as binomials, latencies as a multinomial over the router's
histogram buckets (``bakeoff.contracts.histogram`` layout, lognormal latencies) -- and
added to cumulative counters, so a simulated snapshot is exactly what a
router that served those requests would report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import norm

from bakeoff.contracts.histogram import LAYOUT, NUM_BUCKETS, bucket_upper_bound, encode_counts
from bakeoff.contracts.snapshot import OUTCOMES, SNAPSHOT_FORMAT

_UPPER_LOG = np.log(np.array([bucket_upper_bound(i) for i in range(NUM_BUCKETS)]))


@dataclass(frozen=True)
class Arm:
    """One variant's behaviour: lognormal latency, error and conversion rates."""

    median: float = 0.1  # seconds
    sigma: float = 0.5  # sd of log latency
    error_rate: float = 0.01
    conversion: float = 0.05
    revenue_mean: float = 20.0  # per conversion (exponential)
    tail_factor: float = 1.0  # multiplies latencies above the control's p95 (a tail-only slowdown)

    def bucket_probs(self) -> np.ndarray:
        cdf = norm.cdf((_UPPER_LOG - math.log(self.median)) / self.sigma)
        if self.tail_factor != 1.0:
            # Latencies above x95 are stretched by tail_factor: P(L' <= y) = P(L <= y/f) for y/f > x95.
            x95 = math.log(self.median) + self.sigma * norm.ppf(0.95)
            stretched = norm.cdf((_UPPER_LOG - math.log(self.tail_factor) - math.log(self.median)) / self.sigma)
            below = _UPPER_LOG <= x95 + math.log(self.tail_factor)
            cdf = np.where(_UPPER_LOG <= x95, cdf, np.where(below, 0.95, stretched))
        cdf[-1] = 1.0
        return np.diff(np.concatenate(([0.0], cdf)))


def _sparse(dense: np.ndarray, count: int, total: float) -> dict[str, Any]:
    """The snapshot's sparse histogram form (as bakeoff.contracts.histogram.encode_counts), vectorised."""
    nz = np.flatnonzero(dense)
    if len(nz) == 0:
        return encode_counts([], 0, 0.0)
    return {"count": count, "sum": total, "offset": int(nz[0]), "counts": dense[nz[0] : nz[-1] + 1].tolist()}


def _empty() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "lat": np.zeros(NUM_BUCKETS, dtype=np.int64),
        "lat_sum": 0.0,
        "conv": 0,
        "rev": 0.0,
        "rev_sq": 0.0,
    }


@dataclass(frozen=True)
class Route:
    """A route of the service: its share of each variant's requests and how slow it is."""

    share: float
    median_factor: float = 1.0  # multiplies the variant's median latency on this route


class Stream:
    """Cumulative per-variant counters, advanced batch by batch.

    With ``routes`` every variant's requests are split over the routes (a
    multinomial with the routes' shares) and the snapshot carries ``by_route``
    as the router does with ``routes:`` configured (docs/snapshot.md);
    ``route_arms[(variant, route)]`` overrides one variant's behaviour on one
    route (e.g. a regression on checkout only).
    """

    def __init__(
        self,
        arms: dict[str, Arm],
        rng: np.random.Generator,
        router_id: str = "sim",
        started_at: float = 0.0,
        routes: dict[str, Route] | None = None,
        route_arms: dict[tuple[str, str], Arm] | None = None,
    ):
        self.arms = arms
        self.rng = rng
        self.routes = dict(routes or {})
        self.route_arms = dict(route_arms or {})
        self.probs = {k: a.bucket_probs() for k, a in arms.items()}
        self.state = {k: _empty() for k in arms}
        self.route_state = {k: {r: _empty() for r in self.routes} for k in arms}
        self._route_probs: dict[tuple[str, str], np.ndarray] = {}
        self.router_id = router_id
        self.started_at = started_at
        self.t = started_at

    def set_arm(self, name: str, arm: Arm) -> None:
        """Change a variant's behaviour from now on (e.g. a regression mid-run)."""
        self.arms[name] = arm
        self.probs[name] = arm.bucket_probs()
        self._route_probs = {k: v for k, v in self._route_probs.items() if k[0] != name}

    def route_arm(self, name: str, route: str) -> Arm:
        if (name, route) in self.route_arms:
            return self.route_arms[(name, route)]
        arm = self.arms[name]
        return replace(arm, median=arm.median * self.routes[route].median_factor)

    def _draw(self, arm: Arm, probs: np.ndarray, n: int, into: list[dict[str, Any]]) -> None:
        errors = int(self.rng.binomial(n, arm.error_rate))
        lat = self.rng.multinomial(n, probs)
        c = int(self.rng.binomial(n, arm.conversion))
        rev = rev_sq = 0.0
        if c:
            vals = self.rng.exponential(arm.revenue_mean, size=c)
            rev, rev_sq = float(vals.sum()), float((vals * vals).sum())
        for s in into:
            s["requests"] += n
            s["errors"] += errors
            s["lat"] += lat
            s["lat_sum"] += n * arm.median * math.exp(arm.sigma**2 / 2)
            s["conv"] += c
            s["rev"] += rev
            s["rev_sq"] += rev_sq

    def advance(self, per_variant: dict[str, int] | int, dt: float = 1.0) -> None:
        self.t += dt
        for k, arm in self.arms.items():
            n = per_variant if isinstance(per_variant, int) else per_variant.get(k, 0)
            if n <= 0:
                continue
            if not self.routes:
                self._draw(arm, self.probs[k], n, [self.state[k]])
                continue
            names = list(self.routes)
            shares = np.array([self.routes[r].share for r in names], dtype=float)
            for r, m in zip(names, self.rng.multinomial(n, shares / shares.sum())):
                if m <= 0:
                    continue
                ra = self.route_arm(k, r)
                probs = self._route_probs.get((k, r))
                if probs is None:
                    probs = self._route_probs[(k, r)] = ra.bucket_probs()
                self._draw(ra, probs, int(m), [self.state[k], self.route_state[k][r]])

    @staticmethod
    def _outcomes(s: dict[str, Any]) -> dict[str, int]:
        outcomes = dict.fromkeys(OUTCOMES, 0)
        outcomes["2xx"] = s["requests"] - s["errors"]
        outcomes["5xx"] = s["errors"]
        return outcomes

    def snapshot(self) -> dict[str, Any]:
        variants = {}
        for k, s in self.state.items():
            variants[k] = {
                "requests": s["requests"],
                "outcomes": self._outcomes(s),
                "latency": _sparse(s["lat"], s["requests"], s["lat_sum"]),
                "metrics": {
                    "conversion": {"count": s["conv"], "sum": float(s["conv"]), "sum_sq": float(s["conv"])},
                    "revenue": {"count": s["conv"], "sum": s["rev"], "sum_sq": s["rev_sq"]},
                },
                "invalid_metrics": 0,
            }
            if self.routes:
                variants[k]["by_route"] = {
                    r: {
                        "requests": rs["requests"],
                        "outcomes": self._outcomes(rs),
                        "latency": _sparse(rs["lat"], rs["requests"], rs["lat_sum"]),
                    }
                    for r, rs in self.route_state[k].items()
                }
        return {
            "format": SNAPSHOT_FORMAT,
            "taken_at": self.t,
            "sources": [{"router_id": self.router_id, "pid": 1, "started_at": self.started_at}],
            "histogram": dict(LAYOUT),
            "routes": {"version": 1, "weights": {k: 1 for k in self.arms}},
            "variants": variants,
        }
