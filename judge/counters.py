"""From cumulative snapshots to per-look increments (pure, no I/O).

A snapshot (``bakeoff.snapshot/v1``, docs/snapshot.md) holds counters that
only grow while the router process lives.  The sequential tests need the
*new* requests since the previous look, so the judge keeps the previous
snapshot's counters as a baseline and subtracts.  Restarts are detected by a
changed ``sources`` set (router id + start time) or by any count going down;
the judge then rebases on the new snapshot without consuming anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bakeoff.contracts.histogram import NUM_BUCKETS
from bakeoff.contracts.snapshot import OUTCOMES, SnapshotError, validate

ERROR_OUTCOMES = ("5xx", "connect_error", "timeout")


class InvalidSnapshot(ValueError):
    pass


@dataclass
class VariantCounters:
    requests: int = 0
    errors: int = 0
    latency: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BUCKETS, dtype=np.int64))
    metrics: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # count, sum, sum_sq

    def copy(self) -> VariantCounters:
        return VariantCounters(self.requests, self.errors, self.latency.copy(), dict(self.metrics))

    def add(self, other: VariantCounters) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.latency += other.latency
        for k, (c, s, q) in other.metrics.items():
            c0, s0, q0 = self.metrics.get(k, (0, 0.0, 0.0))
            self.metrics[k] = (c0 + c, s0 + s, q0 + q)

    def minus(self, base: VariantCounters) -> VariantCounters:
        out = VariantCounters(self.requests - base.requests, self.errors - base.errors, self.latency - base.latency)
        for k, (c, s, q) in self.metrics.items():
            c0, s0, q0 = base.metrics.get(k, (0, 0.0, 0.0))
            out.metrics[k] = (c - c0, s - s0, q - q0)
        return out

    def went_backwards(self, base: VariantCounters) -> bool:
        if self.requests < base.requests or self.errors < base.errors:
            return True
        if np.any(self.latency < base.latency):
            return True
        for k, (c0, _, q0) in base.metrics.items():
            c, _, q = self.metrics.get(k, (0, 0.0, 0.0))
            if c < c0 or q < q0 - 1e-9 * max(1.0, abs(q0)):
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        nz = np.nonzero(self.latency)[0]
        return {
            "requests": self.requests,
            "errors": self.errors,
            "latency": {"index": nz.tolist(), "counts": self.latency[nz].tolist()},
            "metrics": {k: list(v) for k, v in sorted(self.metrics.items())},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VariantCounters:
        lat = np.zeros(NUM_BUCKETS, dtype=np.int64)
        lat[np.asarray(d["latency"]["index"], dtype=np.int64)] = np.asarray(d["latency"]["counts"], dtype=np.int64)
        return cls(
            int(d["requests"]),
            int(d["errors"]),
            lat,
            {k: (int(v[0]), float(v[1]), float(v[2])) for k, v in d.get("metrics", {}).items()},
        )


def _dense(latency: dict[str, Any]) -> np.ndarray:
    """Dense bucket counts (what router.histogram.decode_counts gives, vectorised)."""
    sparse = latency.get("counts") or []
    offset = int(latency.get("offset", 0))
    if not sparse:
        return np.zeros(NUM_BUCKETS, dtype=np.int64)
    arr = np.asarray(sparse)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
        raise InvalidSnapshot("snapshot: latency counts must be integers")
    out = np.zeros(NUM_BUCKETS, dtype=np.int64)
    out[offset : offset + len(arr)] = arr.astype(np.int64)
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_snapshot(snapshot: Any) -> tuple[dict[str, VariantCounters], tuple, float | None]:
    """Counters per variant, the sources fingerprint, and taken_at.

    Raises InvalidSnapshot (never anything else) for anything malformed:
    wrong shape, NaN or infinite numbers, negative counts, outcomes that do not
    fit in the request count.
    """
    try:
        validate(snapshot)
    except SnapshotError as e:
        raise InvalidSnapshot(str(e)) from None
    except Exception as e:  # a shape validate() did not foresee
        raise InvalidSnapshot(f"snapshot: malformed ({type(e).__name__}: {e})") from None
    out: dict[str, VariantCounters] = {}
    try:
        for name, v in snapshot["variants"].items():
            requests = v["requests"]
            outcomes = v["outcomes"]
            if requests < 0 or any(outcomes.get(k, 0) < 0 for k in OUTCOMES):
                raise InvalidSnapshot(f"snapshot: variants.{name} has a negative count")
            errors = sum(int(outcomes.get(k, 0)) for k in ERROR_OUTCOMES)
            if errors > requests:
                raise InvalidSnapshot(f"snapshot: variants.{name} has more errors than requests")
            lat = _dense(v.get("latency") or {})
            if lat.min(initial=0) < 0:
                raise InvalidSnapshot(f"snapshot: variants.{name}.latency has a negative count")
            metrics = {}
            for mname, m in (v.get("metrics") or {}).items():
                if not isinstance(m, dict):
                    raise InvalidSnapshot(f"snapshot: variants.{name}.metrics.{mname} must be an object")
                c, s, q = m.get("count", 0), m.get("sum", 0.0), m.get("sum_sq", 0.0)
                if not (_finite(c) and _finite(s) and _finite(q)) or c < 0 or q < 0 or int(c) != c:
                    raise InvalidSnapshot(f"snapshot: variants.{name}.metrics.{mname} is not finite and non-negative")
                metrics[str(mname)] = (int(c), float(s), float(q))
            out[str(name)] = VariantCounters(int(requests), errors, lat, metrics)
    except InvalidSnapshot:
        raise
    except Exception as e:
        raise InvalidSnapshot(f"snapshot: malformed ({type(e).__name__}: {e})") from None
    sources = snapshot.get("sources") or []
    try:
        fingerprint = tuple(sorted((str(s.get("router_id")), float(s.get("started_at", 0.0))) for s in sources))
    except Exception:
        raise InvalidSnapshot("snapshot: sources must be a list of {router_id, started_at}") from None
    taken = snapshot.get("taken_at")
    return out, fingerprint, float(taken) if _finite(taken) else None
