"""The report's data: one JSON-ready dict built from a run, and the units its figures are shown in."""

from __future__ import annotations

import math
import time
from typing import Any

from bakeoff.judge.latency import beyond_grid

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def latency_distributions(snap: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    from bakeoff.contracts.histogram import bucket_value, decode_counts, quantile_from_counts

    out: dict[str, dict[str, Any]] = {}
    if not snap:
        return out
    for name, v in (snap.get("variants") or {}).items():
        n = v.get("requests", 0)
        if not n:
            continue
        counts = decode_counts(v["latency"])
        total = sum(counts)
        if not total:
            continue
        cdf, acc = [], 0
        for i, c in enumerate(counts):
            if c:
                acc += c
                cdf.append([bucket_value(i), acc / total])
        out[name] = {
            "count": total,
            "quantiles_ms": {f"p{q}": quantile_from_counts(counts, q / 100) * 1000 for q in (50, 90, 99, 99.9)},
            "cdf": cdf,
        }
    return out


class ReportError(Exception):
    pass


def change_in_units(mv: dict[str, Any]) -> dict[str, Any]:
    """A metric's observed change, its interval and its tolerance in ONE unit, labelled.

    Latency (ratio scale) and relative tolerances: percent of the control
    ("%"); rates and proportions: percentage points ("pp"); other means: the
    metric's own unit ("").  ``tolerance`` is signed in the harmful direction
    (None for the objective, which has a direction but no tolerance).
    """
    est, ci = mv.get("estimate"), list(mv.get("ci") or [None, None])
    control = mv.get("control")
    tol = mv.get("tolerance")
    harm = -1 if mv.get("harm") == "decrease" else 1
    relative_tol = bool(mv.get("tolerance_relative"))
    if mv.get("scale") == "ratio":
        unit, factor = "%", 100.0
    elif relative_tol and isinstance(control, (int, float)) and control:
        # an absolute difference against a relative tolerance: show the difference relative to the control
        unit, factor = "%", 100.0 / abs(control)
    elif mv.get("kind") in ("error_rate", "proportion"):
        unit, factor = "pp", 100.0
    else:
        unit, factor = "", 1.0

    def conv(x: Any) -> float | None:
        return x * factor if isinstance(x, (int, float)) and math.isfinite(x) else None

    tolerance = None
    if mv.get("role") == "guardrail" and isinstance(tol, (int, float)):
        tolerance = harm * tol * (100.0 if unit in ("%", "pp") else 1.0)
    cand = mv.get("candidate")
    observed = None
    if isinstance(control, (int, float)) and isinstance(cand, (int, float)):
        if mv.get("scale") == "ratio":
            observed = conv(cand / control - 1.0) if control else None
        else:
            observed = conv(cand - control)
    # a latency change at the judge's grid edge is a bound ("> +232%"), not a measured figure
    bound = beyond_grid(est) if mv.get("scale") == "ratio" and isinstance(est, (int, float)) else 0
    return {
        "unit": unit,
        "change": conv(est),
        "ci": [conv(ci[0]), conv(ci[1])],
        "tolerance": tolerance,
        "observed": observed,
        "bound": bound,
    }


def observed_note(mv: dict[str, Any], u: dict[str, Any], routed: bool) -> str | None:
    """Why the plain observed difference (candidate minus control over all requests) sits
    more than the interval's half-width from the estimate, or None when it does not."""
    obs, est, (lo, hi) = u.get("observed"), u["change"], u["ci"]
    if obs is None or est is None or lo is None or hi is None or not abs(obs - est) > (hi - lo) / 2:
        return None
    if mv.get("scale") == "ratio":
        why = (
            "the columns are percentiles of all requests so far, while the change compares the arms look by look"
            " (latency or the split moved during the run)"
        )
    elif routed and not mv.get("route"):
        why = (
            "the change compares each route with the same route of the mainline, weighted by the routes' shares"
            " of the traffic, so a different mix of routes between the variants is not counted"
        )
    else:
        why = (
            "the change weights each look's new requests by their precision, so looks where the rate or the"
            " split moved count differently from the plain totals"
        )
    return f"observed {format_in_units(obs, u['unit'])} against the estimate {format_in_units(est, u['unit'])}: {why}"


def format_change(u: dict[str, Any]) -> str:
    """``change_in_units``'s change as text: "+3.1%", or a bound "> +232%" beyond the judge's grid."""
    text = format_in_units(u["change"], u["unit"])
    return {1: "> ", -1: "< "}.get(u.get("bound") or 0, "") + text


def format_in_units(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    if unit == "%":
        return f"{x:+.1f}%"
    if unit == "pp":
        return f"{x:+.2f} pp"
    return f"{x:+.4g}"


def status_codes(snap: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """Per variant: requests by outcome (1xx..5xx, connect_error, timeout, ...) from the router's snapshot."""
    out: dict[str, dict[str, int]] = {}
    for name, v in ((snap or {}).get("variants") or {}).items():
        o = v.get("outcomes") or {}
        out[name] = {k: int(n) for k, n in o.items() if isinstance(n, int)}
    return out


def build(runner: Any, snap: dict[str, Any] | None) -> dict[str, Any]:
    from bakeoff.controller.view import variant_rows

    if snap is not None:
        runner.last_snapshot = snap
    st = runner.state
    variants = {}
    for row in variant_rows(runner):
        res = runner.res.variant(row["variant"])
        variants[row["variant"]] = {**row, "change": dict(res.change) if res else {}}
    now = time.time()
    started = getattr(runner, "started_at", None)
    d = st.decision
    ended = d.get("at") if d else None
    b = runner.b
    return {
        "format": "bakeoff.report/v1",
        "generated_at": now,
        "started_at": started,
        "duration_s": ((ended or now) - started) if started else None,
        "source": runner.res.origin,
        "config": {
            "judge": b.judge_raw,
            "routing": {
                "steps": list(b.routing.steps),
                "stepInterval": b.routing.step_interval,
                "maxCandidateShare": b.routing.max_candidate_share,
                "stickiness": b.routing.sticky_header or b.routing.sticky_cookie,
                "routes": [{"name": r.name, "match": r.match} for r in b.routing.routes],
            },
            "promotion": b.promotion,
        },
        "load": getattr(runner, "load_description", None),
        "status_codes": status_codes(runner.last_snapshot),
        "bakeoff": runner.b.name,
        "phase": st.phase,
        "mainline": st.mainline,
        "original_mainline": runner.b.mainline_name,
        "decision": st.decision,
        "judge": {
            "alpha": runner.b.judge.alpha,
            "minSamples": runner.b.judge.min_samples,
            "candidates": runner.b.judge.candidates,
            "metrics": [m.to_json() for m in runner.b.judge.metrics],
        },
        "variants": variants,
        "events": [e for e in runner.events],
        "verdict": runner.verdict.to_json() if runner.verdict is not None else None,
        "history": runner.history,
        "latency": latency_distributions(runner.last_snapshot),
        "resources": runner.resource_summary() if hasattr(runner, "resource_summary") else {},
    }


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def _pct(x: Any) -> str:
    return _fmt(x * 100 if isinstance(x, (int, float)) else None, "+.2f") + ("%" if x is not None else "")


def _finite(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(_finite(v) for v in x)
    return True
