"""The snapshot format: validation and merging across workers and replicas.

A snapshot is cumulative: every counter only grows for as long as the router
process that wrote it lives.  Merging adds counters and histograms of the
same variant, so the merge of N workers' or replicas' snapshots is exactly
the snapshot one process would have written had it served all their traffic.
The format is described for users in docs/snapshot.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bakeoff.contracts.histogram import LAYOUT, NUM_BUCKETS, decode_counts, encode_counts

# Outcome classes, in snapshot order. connect_error and timeout are the
# router's own 502 and 504 for an upstream it could not reach or that did not
# answer in time; aborted is a client that went away before its response was
# complete; upgraded is a 101 Switching Protocols (a WebSocket session and the
# like), neither a success nor an error of the variant.  1xx stays for old
# readers and counts nothing since upgraded exists: interim responses are
# never final.  Snapshots of routers older than a key count it as 0.
OUTCOMES = ("1xx", "2xx", "3xx", "4xx", "5xx", "connect_error", "timeout", "aborted", "upgraded")
CONNECT_ERROR = 5
TIMEOUT = 6
ABORTED = 7
UPGRADED = 8

SNAPSHOT_FORMAT = "bakeoff.snapshot/v1"
# Per-route statistics (optional "by_route" of a variant): the route a request
# matched no pattern of, and the most routes a router accepts besides it.
OTHER_ROUTE = "other"
MAX_ROUTES = 64
# Resource cost per variant (optional "resources" of a variant, bakeoff.judge.sources.resources):
# cumulative batch statistics {count, sum, sum_sq} of each kind, in CPU seconds per request and bytes.
RESOURCE_KINDS = ("cpu_per_request", "memory")


class SnapshotError(ValueError):
    pass


def validate(snapshot: Any, origin: str = "snapshot") -> dict[str, Any]:
    """Check a snapshot's shape; raise SnapshotError naming the bad field."""
    variants = validate_header(snapshot, origin)
    for name, v in variants.items():
        where = f"{origin}: variants.{name}"
        if not isinstance(v, dict):
            raise SnapshotError(f"{where} must be an object")
        if not isinstance(v.get("requests"), int):
            raise SnapshotError(f"{where}.requests must be an integer")
        outcomes = v.get("outcomes")
        if not isinstance(outcomes, dict) or any(not isinstance(outcomes.get(k, 0), int) for k in OUTCOMES):
            raise SnapshotError(f"{where}.outcomes must map {', '.join(OUTCOMES)} to integers")
        try:
            decode_counts(v.get("latency", {}))
        except (TypeError, ValueError) as e:
            raise SnapshotError(f"{where}.latency: {e}") from None
        if not isinstance(v.get("metrics", {}), dict):
            raise SnapshotError(f"{where}.metrics must be an object")
        by_route = v.get("by_route")
        if by_route is not None:
            _validate_by_route(by_route, v, where)
        resources = v.get("resources")
        if resources is not None:
            _validate_resources(resources, where)
    return snapshot


def validate_header(snapshot: Any, origin: str = "snapshot") -> dict[str, Any]:
    """The checks of :func:`validate` above the variants (format, histogram layout, a
    ``variants`` object); returns the variants.  For a reader that checks every variant as
    it parses it (the judge's ``parse_snapshot``), so that each variant is not checked twice."""
    if not isinstance(snapshot, dict):
        raise SnapshotError(f"{origin}: expected a JSON object, got {type(snapshot).__name__}")
    fmt = snapshot.get("format")
    if fmt != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{origin}: field 'format' is {fmt!r}, expected {SNAPSHOT_FORMAT!r}")
    layout = snapshot.get("histogram", {})
    if layout.get("num_buckets") != NUM_BUCKETS or layout.get("gamma") != LAYOUT["gamma"]:
        raise SnapshotError(f"{origin}: field 'histogram' has a layout this version cannot merge")
    variants = snapshot.get("variants")
    if not isinstance(variants, dict):
        raise SnapshotError(f"{origin}: field 'variants' must be an object")
    return variants


def _validate_resources(resources: Any, where: str) -> None:
    if not isinstance(resources, dict):
        raise SnapshotError(f"{where}.resources must be an object")
    for kind, r in resources.items():
        if kind not in RESOURCE_KINDS:
            raise SnapshotError(f"{where}.resources.{kind}: unknown kind (known: {', '.join(RESOURCE_KINDS)})")
        if (
            not isinstance(r, dict)
            or not isinstance(r.get("count"), int)
            or any(isinstance(r.get(k), bool) or not isinstance(r.get(k), (int, float)) for k in ("sum", "sum_sq"))
        ):
            raise SnapshotError(f"{where}.resources.{kind} must be {{count: integer, sum: number, sum_sq: number}}")


def _validate_by_route(by_route: Any, variant: dict[str, Any], where: str) -> None:
    if not isinstance(by_route, dict):
        raise SnapshotError(f"{where}.by_route must be an object")
    if len(by_route) > MAX_ROUTES + 1:
        raise SnapshotError(f"{where}.by_route has {len(by_route)} routes, at most {MAX_ROUTES} and {OTHER_ROUTE!r}")
    total = 0
    for route, r in by_route.items():
        at = f"{where}.by_route.{route}"
        if not isinstance(r, dict) or not isinstance(r.get("requests"), int):
            raise SnapshotError(f"{at}.requests must be an integer")
        outcomes = r.get("outcomes")
        if not isinstance(outcomes, dict) or any(not isinstance(outcomes.get(k, 0), int) for k in OUTCOMES):
            raise SnapshotError(f"{at}.outcomes must map {', '.join(OUTCOMES)} to integers")
        try:
            decode_counts(r.get("latency", {}))
        except (TypeError, ValueError) as e:
            raise SnapshotError(f"{at}.latency: {e}") from None
        total += r["requests"]
    # Equal for one router; less only in a merge with routers that predate routes.
    if total > variant["requests"]:
        raise SnapshotError(
            f"{where}.by_route: requests add up to {total}, more than the variant's {variant['requests']}"
        )


def merge_snapshots(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum snapshots of several router processes into one.

    Routes are taken from the snapshot with the highest routes version (the
    newest table any replica has applied); ``taken_at`` is the oldest, so a
    consumer never believes data is fresher than its stalest part.
    """
    snapshots = list(snapshots)
    if not snapshots:
        raise SnapshotError("nothing to merge")
    for i, s in enumerate(snapshots):
        validate(s, f"snapshot {i}")
    merged_variants: dict[str, dict[str, Any]] = {}
    for s in snapshots:
        for name, v in s["variants"].items():
            acc = merged_variants.get(name)
            if acc is None:
                acc = merged_variants[name] = {
                    "requests": 0,
                    "outcomes": dict.fromkeys(OUTCOMES, 0),
                    "dense": [0] * NUM_BUCKETS,
                    "count": 0,
                    "sum": 0.0,
                    "metrics": {},
                    "invalid_metrics": 0,
                    "by_route": None,
                    "resources": {},
                }
            acc["requests"] += v["requests"]
            for k in OUTCOMES:
                acc["outcomes"][k] += v["outcomes"].get(k, 0)
            lat = v.get("latency", {})
            for i, c in enumerate(decode_counts(lat)):
                if c:
                    acc["dense"][i] += c
            acc["count"] += int(lat.get("count", 0))
            acc["sum"] += float(lat.get("sum", 0.0))
            for mname, m in v.get("metrics", {}).items():
                macc = acc["metrics"].setdefault(mname, {"count": 0, "sum": 0.0, "sum_sq": 0.0})
                macc["count"] += int(m.get("count", 0))
                macc["sum"] += float(m.get("sum", 0.0))
                macc["sum_sq"] += float(m.get("sum_sq", 0.0))
            acc["invalid_metrics"] += int(v.get("invalid_metrics", 0))
            for kind, r in (v.get("resources") or {}).items():
                racc = acc["resources"].setdefault(kind, {"count": 0, "sum": 0.0, "sum_sq": 0.0})
                racc["count"] += int(r["count"])
                racc["sum"] += float(r["sum"])
                racc["sum_sq"] += float(r["sum_sq"])
            if v.get("by_route") is not None:
                routes = acc["by_route"] = acc["by_route"] or {}
                for route, r in v["by_route"].items():
                    racc = routes.setdefault(
                        route, {"requests": 0, "outcomes": dict.fromkeys(OUTCOMES, 0), "dense": [0] * NUM_BUCKETS,
                                "count": 0, "sum": 0.0},
                    )  # fmt: skip
                    racc["requests"] += r["requests"]
                    for k in OUTCOMES:
                        racc["outcomes"][k] += r["outcomes"].get(k, 0)
                    rlat = r.get("latency", {})
                    for i, c in enumerate(decode_counts(rlat)):
                        if c:
                            racc["dense"][i] += c
                    racc["count"] += int(rlat.get("count", 0))
                    racc["sum"] += float(rlat.get("sum", 0.0))
    newest_routes = max(snapshots, key=lambda s: s.get("routes", {}).get("version", 0))
    variants: dict[str, dict[str, Any]] = {}
    for name, acc in sorted(merged_variants.items()):
        out: dict[str, Any] = {
            "requests": acc["requests"],
            "outcomes": acc["outcomes"],
            "latency": encode_counts(acc["dense"], acc["count"], acc["sum"]),
            "metrics": {k: acc["metrics"][k] for k in sorted(acc["metrics"])},
            "invalid_metrics": acc["invalid_metrics"],
        }
        if acc["resources"]:
            out["resources"] = {k: acc["resources"][k] for k in sorted(acc["resources"])}
        if acc["by_route"] is not None:
            out["by_route"] = {
                route: {
                    "requests": r["requests"],
                    "outcomes": r["outcomes"],
                    "latency": encode_counts(r["dense"], r["count"], r["sum"]),
                }
                for route, r in sorted(acc["by_route"].items())
            }
        variants[name] = out
    return {
        "format": SNAPSHOT_FORMAT,
        "taken_at": min(s.get("taken_at", 0.0) for s in snapshots),
        "sources": [src for s in snapshots for src in s.get("sources", [])],
        "histogram": dict(LAYOUT),
        "routes": newest_routes.get("routes", {"version": 0, "weights": {}}),
        "variants": variants,
    }
